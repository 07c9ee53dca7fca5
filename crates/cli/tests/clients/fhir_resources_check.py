"""fhir.resources (pydantic models; R4B, whose models read R4 resources) parses every
resource the server holds, fetched page by page with each type's search. Usage:
fhir_resources_check.py BASE_URL TOKEN TYPE[,TYPE...]."""

import json
import sys
import urllib.request

from fhir.resources.R4B import get_fhir_model_class

base, token, types = sys.argv[1], sys.argv[2], sys.argv[3].split(",")


def get(url):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


parsed, failed = 0, []
for resource_type in types:
    url = f"{base}/{resource_type}?_count=500"
    model = get_fhir_model_class(resource_type)
    while url:
        bundle = get(url)
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            try:
                model.model_validate(resource)
                parsed += 1
            except Exception as error:  # pydantic's ValidationError, or anything else it raises
                failed.append(f"{resource_type}/{resource.get('id')}: {str(error)[:300]}")
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)

for failure in failed[:20]:
    print(f"FAIL fhir.resources: {failure}")
print(f"fhir.resources: {parsed} parsed, {len(failed)} failed, over {len(types)} types")
sys.exit(1 if failed or parsed == 0 else 0)
