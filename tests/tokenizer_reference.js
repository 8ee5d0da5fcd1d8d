// Reference encoder for tokenizer_test: encodes JSON-string lines with the npm @huggingface/tokenizers package.
//
// Usage: node tests/tokenizer_reference.js TOKENIZER_DIR < texts.jsonl > ids.jsonl
// Each input line is a JSON string (the text); each output line is the JSON array of its ids
// (encode(text, {add_special_tokens: false})). Runs offline; needs `npm ci` at the repo root.
"use strict";
const fs = require("fs");
const path = require("path");

let Tokenizer;
try {
  ({ Tokenizer } = require("@huggingface/tokenizers"));
} catch (e) {
  process.stderr.write("tokenizer_reference.js: cannot load @huggingface/tokenizers (run `npm ci` in the repository root): " + e.message + "\n");
  process.exit(3);
}

const dir = process.argv[2];
if (!dir) {
  process.stderr.write("usage: node tokenizer_reference.js TOKENIZER_DIR < texts.jsonl\n");
  process.exit(2);
}
const tokenizerJson = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
const configPath = path.join(dir, "tokenizer_config.json");
const tokenizerConfig = fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {};
const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);

const input = fs.readFileSync(0, "utf8");
const out = [];
for (const line of input.split("\n")) {
  if (line.length === 0) continue;
  const text = JSON.parse(line);
  out.push(JSON.stringify(tokenizer.encode(text, { add_special_tokens: false }).ids));
}
fs.writeFileSync(1, out.join("\n") + (out.length ? "\n" : ""));
