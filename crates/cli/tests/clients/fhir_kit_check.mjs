// fhir-kit-client (npm) against a running Chartroom: read, search, transaction, paging and
// history. Usage: node fhir_kit_check.mjs BASE_URL TOKEN NODE_MODULES (the directory that
// holds fhir-kit-client, an ES module). Exits non-zero at the first failing step.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [base, token, nodeModules] = process.argv.slice(2);
const { Client } = await import(pathToFileURL(join(nodeModules, 'fhir-kit-client', 'dist', 'index.js')).href);
const client = new Client({ baseUrl: base, customHeaders: { Authorization: `Bearer ${token}` } });

function step(name, ok, detail = '') {
  console.log(`${ok ? 'ok  ' : 'FAIL'} fhir-kit-client: ${name} ${detail}`.trimEnd());
  if (!ok) process.exit(1);
}

async function main() {
  const capabilities = await client.capabilityStatement();
  step('capabilityStatement()', capabilities.resourceType === 'CapabilityStatement');

  const search = await client.search({ resourceType: 'Patient', searchParams: { _count: 4 } });
  step('search', search.resourceType === 'Bundle' && search.entry.length === 4 && search.total > 4,
    `(total ${search.total})`);
  const patient = search.entry[0].resource;
  const read = await client.read({ resourceType: 'Patient', id: patient.id });
  step('read', read.id === patient.id);

  let page = search;
  const seen = new Set();
  while (page) {
    (page.entry || []).forEach((e) => seen.add(e.resource.id));
    page = await client.nextPage({ bundle: page });
  }
  step('paging with nextPage() through every Patient', seen.size === search.total, `(${seen.size})`);
  const second = await client.nextPage({ bundle: search });
  const back = await client.prevPage({ bundle: second });
  step('prevPage()', back && back.entry[0].resource.id === patient.id);

  const transaction = await client.transaction({
    body: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: 'urn:uuid:8f1d7c1e-6c4f-4bd3-9d0e-3f0c7a1b2c3d',
          resource: { resourceType: 'Patient', name: [{ family: 'Kitclient', given: ['Node'] }], gender: 'other' },
          request: { method: 'POST', url: 'Patient' },
        },
        {
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
            subject: { reference: 'urn:uuid:8f1d7c1e-6c4f-4bd3-9d0e-3f0c7a1b2c3d' },
            valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
          },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    },
  });
  const statuses = transaction.entry.map((e) => e.response.status);
  step('transaction', transaction.type === 'transaction-response' && statuses.every((s) => s.startsWith('201')),
    `(${statuses.join(', ')})`);
  const newPatient = transaction.entry[0].response.location.match(/Patient\/([^/]+)/)[1];
  const observations = await client.search({ resourceType: 'Observation', searchParams: { subject: `Patient/${newPatient}` } });
  step('the transaction resolved the urn:uuid reference', observations.total === 1);

  const updated = await client.update({
    resourceType: 'Patient', id: newPatient, body: { resourceType: 'Patient', id: newPatient, name: [{ family: 'Kitclient' }], gender: 'unknown' },
  });
  step('update', updated.meta.versionId === '2');
  const history = await client.history({ resourceType: 'Patient', id: newPatient });
  step('instance history', history.type === 'history' && history.entry.length === 2, `(${history.entry.length} versions)`);
  const typeHistory = await client.typeHistory({ resourceType: 'Patient' });
  step('type history', typeHistory.type === 'history' && typeHistory.entry.length > 0
    && typeHistory.entry.some((e) => e.resource && e.resource.id === newPatient));
  const version = await client.vread({ resourceType: 'Patient', id: newPatient, version: '1' });
  step('vread', version.gender === 'other');
  console.log('fhir-kit-client: every step passed');
}

main().catch((error) => {
  console.log(`FAIL fhir-kit-client: ${error.message || error} ${JSON.stringify(error.response && error.response.data || '')}`);
  process.exit(1);
});
