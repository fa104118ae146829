"""`FormUnion`: make a discriminated union of recipe models render as a form in the Prefect dashboard.

Pydantic writes a tagged union (`Field(discriminator="task")`) as JSON Schema `oneOf` + `discriminator`;
the Prefect 3.8.8 dashboard's schema form (the default V1 UI) does not render that: the custom-run form of
the deployment falls back to a raw JSON editor. It does render `anyOf` on an object's field: a button per
member (its title) above that member's form, with descriptions, defaults and dropdowns. `FormUnion()`
rewrites the union's JSON Schema to `anyOf` and leaves validation alone: pydantic still picks the member by
the tag, and an error names `task`'s member and the field (`causal_lm.llm.steps: ...`).

    Recipe = Annotated[ImageClassificationRecipe | CausalLMRecipe, Field(discriminator="task"), FormUnion()]

    @flow
    def compress_model(recipe: Recipe): ...

Checked in a browser on Prefect 3.8.8: one form per task, switched by buttons labelled with member titles.
Give each member a `title` (model_config title=...) to label its button, e.g. "image_classification".

A union that is the item of a list (the quantization variants) needs `FormUnion(tag=..., members=...)`: the
same form does not render `anyOf` on list items (each item becomes a JSON editor), and it picks an
`anyOf` member by matching key names, so members of the same shape (int8 and nf4 variants: name,
technique, options) cannot be told apart. With `tag`, the schema is one object for every member: the tag
a dropdown of the member tags, a field that every member declares alike as it is, and a field that
differs between members (`options`: each technique's own `*Config`) a JSON value whose description lists
it per tag. Validation is still pydantic's, member by member (an int8 option on nf4 is refused).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel


class FormUnion:
    """Annotated marker: the union's JSON Schema as `anyOf` (rendered by Prefect's form) or, with `tag` and
    the member models, as one object whose `tag` field is a dropdown of the members; validation unchanged."""

    def __init__(self, tag: str | None = None, members: Sequence[type[BaseModel]] = ()):
        if bool(tag) != bool(members):
            raise ValueError(f"FormUnion takes tag and members together, got tag={tag!r} and {len(members)} members")
        self.tag, self.members = tag, tuple(members)

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        members = schema.pop("oneOf", None) or schema.pop("anyOf", None)
        if members is None:
            return schema
        schema.pop("discriminator", None)
        if self.tag is None:
            return schema | {"anyOf": members}
        return schema | merged_form(self.tag, self.members)


def merged_form(tag: str, members: Sequence[type[BaseModel]]) -> dict[str, Any]:
    """One object schema for the models of a union tagged by `tag` (see the module docstring). Built from
    each model's own schema, so the result refers to no definition."""
    schemas = {s["properties"][tag]["const"]: s for s in (m.model_json_schema() for m in members)}
    properties: dict[str, Any] = {}
    for name in dict.fromkeys(n for s in schemas.values() for n in s["properties"]):
        declared = {t: s["properties"][name] for t, s in schemas.items() if name in s["properties"]}
        first = next(iter(declared.values()))
        title = first.get("title", name.replace("_", " ").title())
        if name == tag:
            properties[name] = {"title": title, "type": "string", "enum": list(schemas), "description":
                                "; ".join(f"{t}: {p.get('description', '')}" for t, p in declared.items())}
        elif all(p == first for p in declared.values()) and len(declared) == len(schemas) and "$ref" not in str(first):
            properties[name] = first  # declared alike by every member
        else:
            per_tag = "; ".join(f"{t}: {_fields(declared[t], s) if t in declared else 'none'}" for t, s in schemas.items())
            properties[name] = {"title": title, "description": f"JSON, by {tag}: {per_tag}"}
    required = [n for n in next(iter(schemas.values())).get("required", []) if all(n in s.get("required", []) for s in schemas.values())]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _fields(prop: dict[str, Any], schema: dict[str, Any]) -> str:
    """`{a: 1, b: []}`: the fields of an object property of `schema` (a local $ref resolved), with defaults."""
    if "$ref" in prop:
        prop = schema["$defs"][prop["$ref"].rsplit("/", 1)[1]]
    fields = prop.get("properties", {})
    return "{" + ", ".join(f"{n}: {json.dumps(p['default'])}" if "default" in p else n
                           for n, p in fields.items()) + "}"
