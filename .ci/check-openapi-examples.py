"""Checks every example in the OpenAPI document against its schema: request bodies and
every response (each of which must have a description and, when it has a body, an example)."""
import json
import sys

from jsonschema import Draft202012Validator, FormatChecker

doc = json.load(open(sys.argv[1]))
checked = {"request": 0, "response": 0}
failures = []


def check(where, media, kind):
    # `#/components/...` resolves against the schema's root, so give it the components.
    schema = dict(media["schema"], components=doc["components"])
    examples = [media["example"]] if "example" in media else [e["value"] for e in media.get("examples", {}).values()]
    for example in examples:
        errors = list(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(example))
        failures.extend(f"{where}: {e.json_path}: {e.message}" for e in errors)
        checked[kind] += 1


for path, operations in doc["paths"].items():
    for method, op in operations.items():
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body and ("example" in body or "examples" in body):
            check(f"{method.upper()} {path} request", body, "request")
        for status, response in op["responses"].items():
            where = f"{method.upper()} {path} {status}"
            if "$ref" in response:
                response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            if not response.get("description"):
                failures.append(f"{where}: no description")
            for media_type, media in response.get("content", {}).items():
                if "example" not in media and "examples" not in media:
                    failures.append(f"{where} {media_type}: no example")
                elif "schema" in media:
                    check(f"{where} {media_type}", media, "response")
if failures or not checked["request"] or not checked["response"]:
    print("\n".join(failures) or "no examples found", file=sys.stderr)
    sys.exit(1)
print(f"{checked['request']} request and {checked['response']} response examples are valid")
