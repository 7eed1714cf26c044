export * from "./CassandraClient.js"
export * from "./CassandraHistory.js"
export * from "./CassandraMigrations.js"
export * from "./ChatSchema.js"
