// Imported first by main.ts: module imports run in order, so these hold before the others run.
import { applyServerV8Flags } from "./V8Tuning.js"

applyServerV8Flags()
