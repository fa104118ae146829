"""`FormUnion`: make a discriminated union of recipe models render as a form in the Prefect dashboard.

Pydantic writes a tagged union (`Field(discriminator="task")`) as JSON Schema `oneOf` + `discriminator`;
the Prefect 3.8 dashboard's schema form (the default V1 UI) does not render that: the custom-run form of
the deployment falls back to a raw JSON editor. It does render `anyOf`: a button per member (its title)
above that member's form, with descriptions, defaults and dropdowns. `FormUnion()` rewrites the union's
JSON Schema to `anyOf` and leaves validation alone: pydantic still picks the member by the tag, and an
error names `task`'s member and the field (`causal_lm.llm.steps: ...`).

    Recipe = Annotated[ImageClassificationRecipe | CausalLMRecipe, Field(discriminator="task"), FormUnion()]

    @flow
    def compress_model(recipe: Recipe): ...

Checked in a browser on Prefect 3.8.8: one form per task, switched by buttons labelled with member titles.
Give each member a `title` (model_config title=...) to label its button, e.g. "image_classification".
"""

from __future__ import annotations

from typing import Any


class FormUnion:
    """Annotated marker: the union's JSON Schema as `anyOf` (rendered by Prefect's form), validation unchanged."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        if "oneOf" in schema:
            schema["anyOf"] = schema.pop("oneOf")
            schema.pop("discriminator", None)
        return schema
