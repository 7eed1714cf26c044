export * from "./SqliteHistory.js"
export * from "./SqliteLogJournal.js"
export * from "./SqliteCheckpoints.js"
