export * from "./SqliteHistory.js"
export * from "./SqliteLogJournal.js"
