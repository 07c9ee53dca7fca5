// The FHIRPath benchmark workload on fhirpath.js: every R4 SearchParameter expression on every
// specification example of its resource types (the same pairs `chartroom bench fhirpath` runs).
// Usage: node bench.js FHIR_DIR SECONDS
const fs = require('fs');
const path = require('path');
const fhirpath = require('fhirpath');
const r4 = require('fhirpath/fhir-context/r4');

const [fhirDir, seconds = '5', errorsFile] = process.argv.slice(2);
const bundle = JSON.parse(fs.readFileSync(path.join(fhirDir, 'definitions/search-parameters.json')));
const files = fs.readdirSync(path.join(fhirDir, 'examples')).sort();
const examples = files.map((f) => JSON.parse(fs.readFileSync(path.join(fhirDir, 'examples', f))));

const pairs = [];
let expressionCount = 0;
for (const entry of bundle.entry) {
  const parameter = entry.resource;
  if (!parameter.expression) continue;
  const compiled = fhirpath.compile(parameter.expression, r4);
  expressionCount++;
  for (const example of examples) {
    const t = example.resourceType;
    if (parameter.base.includes(t) || parameter.base.includes('Resource') || parameter.base.includes('DomainResource')) {
      pairs.push([compiled, example]);
    }
  }
}

// Pairs fhirpath.js cannot evaluate (it throws on `x as T` over several items, which R4's own
// search parameters use) are left out of the timing on both sides: their indices are written
// to ERRORS_FILE for `chartroom bench fhirpath --exclude-pairs`.
const failing = [];
let items = 0;
pairs.forEach(([compiled, example], index) => {
  try {
    items += compiled(example).length;
  } catch (e) {
    failing.push(index);
  }
});
if (errorsFile) fs.writeFileSync(errorsFile, failing.join('\n') + '\n');
const timed = pairs.filter((_, index) => !failing.includes(index));
console.log(`workload: ${expressionCount} search parameter expressions x matching examples = ${pairs.length} pairs, ${failing.length} throw in fhirpath.js and are excluded; ${timed.length} timed, ${items} result items`);

function pass() {
  let count = 0;
  for (const [compiled, example] of timed) {
    count += compiled(example).length;
  }
  return count;
}
const start = process.hrtime.bigint();
let passes = 0;
while (Number(process.hrtime.bigint() - start) / 1e9 < Number(seconds)) {
  pass();
  passes++;
}
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`fhirpath.js ${require('fhirpath/package.json').version}: ${passes} passes in ${elapsed.toFixed(2)} s = ${Math.round(passes * timed.length / elapsed)} evaluations/s`);
