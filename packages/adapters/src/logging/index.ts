export * from "./BulkLogSink.js"
