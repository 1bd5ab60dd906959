"""Checks that every request-body example in the OpenAPI document is valid against its schema."""
import json
import sys

from jsonschema import Draft202012Validator, FormatChecker

doc = json.load(open(sys.argv[1]))
checked = 0
failures = []
for path, operations in doc["paths"].items():
    for method, op in operations.items():
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if not body or "example" not in body:
            continue
        # `#/components/...` resolves against the schema's root, so give it the components.
        schema = dict(body["schema"], components=doc["components"])
        errors = list(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(body["example"]))
        checked += 1
        failures += [f"{method.upper()} {path}: {e.message}" for e in errors]
if failures or checked == 0:
    print("\n".join(failures) or "no request examples found", file=sys.stderr)
    sys.exit(1)
print(f"{checked} request examples are valid")
