"""fhirclient (SMART on FHIR's Python client) against a running Chartroom: the
CapabilityStatement, reads, searches and strict model parsing of everything that comes
back (its R4 models refuse unknown or mistyped elements). Usage: fhirclient_check.py
BASE_URL TOKEN."""

import sys

from fhirclient import client
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.condition import Condition
from fhirclient.models.encounter import Encounter
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

base, token = sys.argv[1], sys.argv[2]
smart = client.FHIRClient(settings={"app_id": "chartroom-compatibility", "api_base": base})
smart.server.session.headers["Authorization"] = f"Bearer {token}"


def step(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} fhirclient: {name} {detail}".rstrip(), flush=True)
    if not ok:
        sys.exit(1)


capabilities = CapabilityStatement(smart.server.request_json("metadata"))
rest = capabilities.rest[0]
step("CapabilityStatement parses", capabilities.fhirVersion.startswith("4.0") and rest.mode == "server",
     f"({len(rest.resource)} resource types)")

first = Patient.where(struct={"_count": "10"}).perform(smart.server)
step("Patient search parses, with Bundle.total", len(first.entry) == 10 and first.total > 10, f"(total {first.total})")
patients = list(Patient.where(struct={"_count": "10"}).perform_resources_iter(smart.server))
step("every page of the Patient search", len(patients) == first.total and len({p.id for p in patients}) == first.total)
patient = Patient.read(patients[0].id, smart.server)
step("Patient read parses", patient.id == patients[0].id and patient.name[0].family)

observations = list(Observation.where(struct={"subject": f"Patient/{patient.id}", "_count": "50"}).perform_resources_iter(smart.server))
step("Observation search by subject parses", len(observations) > 0
     and all(o.subject.reference == f"Patient/{patient.id}" for o in observations), f"({len(observations)})")

encounters = list(Encounter.where(struct={"patient": patient.id}).perform_resources_iter(smart.server))
conditions = list(Condition.where(struct={"patient": patient.id}).perform_resources_iter(smart.server))
step("Encounter and Condition searches parse", len(encounters) > 0, f"({len(encounters)}, {len(conditions)})")

types, url = set(), f"Patient/{patient.id}/$everything"
while url:
    bundle = Bundle(smart.server.request_json(url))
    types |= {e.resource.resource_type for e in bundle.entry}
    url = next((link.url for link in bundle.link if link.relation == "next"), None)
types = sorted(types)
step("Patient/$everything parses as Bundles, every page", "Patient" in types and "Observation" in types, f"({', '.join(types)})")

page = Observation.where(struct={"_count": "5"}).perform(smart.server)
step("searchset Bundle with total and links parses", page.total and page.total > 5
     and any(link.relation == "next" for link in page.link))
print("fhirclient: every step passed")
