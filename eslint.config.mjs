// ESLint (flat config): typescript-eslint's strict, type-aware rules and Effect's dprint formatting rule.
//   pnpm run lint                 packages/*/src, packages/*/test, bench/ and examples/
//   pnpm run lint --fix           also applies the fixes that are safe
// Every rule below that is off or tuned says why; a single finding that is deliberate is marked where
// it is, with an `eslint-disable-next-line <rule>` comment and the reason (after `--` or on the line above).
import * as effectEslint from "@effect/eslint-plugin"
import eslint from "@eslint/js"
import { defineConfig, globalIgnores } from "eslint/config"
import tseslint from "typescript-eslint"

export default defineConfig(
  globalIgnores(["**/dist/**", "**/node_modules/**"]),
  eslint.configs.recommended,
  tseslint.configs.strictTypeChecked,
  ...effectEslint.configs.dprint,
  {
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname
      }
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      // Formatting as the Effect repositories set it, which is also this codebase's style: 2 spaces, no
      // semicolons, double quotes, 120 columns, no trailing commas. Imports stay in the order they are
      // written: sorting them would change the order modules are evaluated in, which is not formatting.
      // `pnpm run lint --fix` applies it; scripts/test.sh fails on any file it would change.
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force",
          "module.sortImportDeclarations": "maintain",
          "module.sortExportDeclarations": "maintain",
          "importDeclaration.sortNamedImports": "maintain",
          "exportDeclaration.sortNamedExports": "maintain"
        }
      }],

      // `xs[i]!` on an index the code has just checked is this codebase's idiom (the hot paths index
      // arrays and buffers in loops), as in the Effect repositories; tsconfig's noUncheckedIndexedAccess
      // makes every unchecked index a compile error, so each `!` is a visible, deliberate claim.
      "@typescript-eslint/no-non-null-assertion": "off",

      // Effect's APIs take `void` as a type argument of a call (`Effect.async<void>`, `Deferred.make<void>()`,
      // `Chunk.empty<void>()`), which this rule reports; misuse of void is left to the compiler.
      "@typescript-eslint/no-invalid-void-type": "off",

      // Numbers in template literals (ports, counts, offsets, durations in messages) print as expected;
      // everything else (undefined, null, objects, unions with them) is still reported.
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],

      // `if (refused) return this.close(record)` in a method returning void is an early exit, and the
      // SignalR and /rpc state machines are written that way throughout; a callback written as
      // `() => resolve()` returns the void of its body, and nobody reads it. None of the rule's options
      // tells these apart from a real use of a void value (it then wants `return void …` instead).
      "@typescript-eslint/no-confusing-void-expression": "off",

      // `return void f()` in a function typed `Effect<void> | undefined` (RpcSocketProtocol's message
      // handlers) turns a void call into the `undefined` the compiler requires there: it has a meaning.
      "@typescript-eslint/no-meaningless-void-operator": "off",

      // `while (true)` with a `break`/`return` inside is a deliberate loop; every other condition that the
      // types say cannot vary is still reported.
      "@typescript-eslint/no-unnecessary-condition": ["error", { allowConstantLoopConditions: true }],

      // Writing a type parameter's default out is deliberate documentation here: `Schema.Schema<A, I, never>`
      // and `Effect.runtime<never>()` say "needs no services", `Redacted.Redacted<string>` what is hidden.
      "@typescript-eslint/no-unnecessary-type-arguments": "off",

      // Spreading a Schema.Class instance (`new ChatEvent({ ...valid, text })`) is the idiom for a modified
      // copy: its fields are its own properties, and the constructor builds the instance again. Spreading a
      // string into code points (`[...id]`) is what the policy and fuzz tests mean to do.
      "@typescript-eslint/no-misused-spread": "off",

      // A leading underscore marks a binding that is deliberately unused: a value taken out of an object
      // by destructuring (`const { token: _token, ...rest }`), a parameter a callback's signature requires.
      "@typescript-eslint/no-unused-vars": ["error", {
        argsIgnorePattern: "^_",
        varsIgnorePattern: "^_",
        caughtErrorsIgnorePattern: "^_",
        destructuredArrayIgnorePattern: "^_"
      }]
    }
  },
  {
    // Policy's validators match control characters on purpose: that is what they refuse.
    files: ["packages/domain/src/Policy.ts"],
    rules: { "no-control-regex": "off" }
  },
  {
    // plain JavaScript run by Node (examples/signalr.mjs): no types to check it against
    files: ["**/*.js", "**/*.mjs", "**/*.cjs"],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly"
      }
    }
  }
)
