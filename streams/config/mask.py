"""A source's `mask:` section: which fields of its payload are masked, how, and what its dead
letters may carry (the stage is processors/mask.py; README "Masking personal data")."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

import schemas
from processors.mask import FieldRule, Masker, schema_rules
from processors.paths import split_path


class FieldMaskSettings(BaseModel):
    """How one field is masked: `sources[].mask.fields.<path>` is a method name (`hmac`) or these keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["hmac", "redact", "truncate", "generalise", "drop", "keep"] = Field(
        description="hmac (keyed pseudonym), redact (the replacement), truncate (IP to a prefix, text to length), "
        "generalise (timestamp to the hour or day, number to a bucket), drop (remove the field), keep (no masking: "
        "overrides a schema's x-pii).")
    length: int | None = Field(None, ge=1, description="hmac: characters kept of the hex (8-64) or base64url (8-43) "
                               "digest, all by default; truncate: characters kept of a string that is not an IP.")
    encoding: Literal["hex", "base64url"] = Field("hex", description="hmac: how the digest is written.")
    replacement: str | int | float | bool | None = Field(
        "[REDACTED]", description="redact: the value written instead; truncate, generalise: what a value they cannot handle "
        "(an invalid IP, a string that is no timestamp) becomes.")
    ipv4_prefix: int = Field(24, ge=0, le=32, description="truncate: bits of an IPv4 address kept.")
    ipv6_prefix: int = Field(48, ge=0, le=128, description="truncate: bits of an IPv6 address kept.")
    to: Literal["hour", "day"] | None = Field(None, description="generalise: timestamps (ISO-8601 or epoch ms) down "
                                              "to the hour or day.")
    bucket: int | float | None = Field(None, gt=0, description="generalise: numbers down to a multiple of this.")

    @model_validator(mode="after")
    def _fits_method(self):
        self.rule()  # the cross-key rules (an option the method does not read, generalise's to or bucket)
        return self

    def rule(self) -> FieldRule:
        return FieldRule.of(self.model_dump(include=self.model_fields_set | {"method"}))


class MaskSettings(BaseModel):
    """PII masking for one source, before anything else sees its events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hmac_secret: SecretStr | None = Field(
        None, description="Key of `hmac` (at least 16 bytes; 32 random bytes recommended): write ${PII_HMAC_KEY} and "
        "set PII_HMAC_KEY or PII_HMAC_KEY_FILE. The same key gives the same pseudonyms on every worker and run; "
        "never logged.")
    fields: dict[str, FieldMaskSettings] = Field(
        default_factory=dict, description="Field path (of the payload as produced, e.g. user_id, page.url, "
        "items.email through a list) -> a method name or {method, ...}; overrides the schema's x-pii.")
    schema_defaults: bool = Field(True, description="Also mask what the source's schemas annotate with x-pii.")
    dead_letters: Literal["mask", "withhold", "raw"] = Field(
        "mask", description="Records that fail before masking (decode, validate): mask (the same masking on the raw "
        "JSON; withheld if it is not a JSON object), withhold (the dead letter has no value, only its headers) or "
        "raw (the clear record, for a dead-letter topic as protected as the source). Later failures always carry "
        "the masked record.")

    @field_validator("fields", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {path: {"method": spec} if isinstance(spec, str) else spec for path, spec in value.items()}
        return value

    @field_validator("fields")
    @classmethod
    def _paths(cls, value: dict[str, FieldMaskSettings]) -> dict[str, FieldMaskSettings]:
        for path in value:
            split_path(path)
        return value

    def masker(self, schema_refs: list[str] | None) -> Masker:
        """The stage: the schemas' x-pii annotations (when `schema_defaults`), then `fields` over them."""
        rules: dict[str, FieldRule] = {}
        if self.schema_defaults:
            for ref in schema_refs or ():
                name, version = schemas.parse_ref(ref)
                rules.update(schema_rules(schemas.load_schema(name, version)))
        rules.update({path.removeprefix("$."): spec.rule() for path, spec in self.fields.items()})
        secret = self.hmac_secret.get_secret_value().encode() if self.hmac_secret else None
        return Masker(rules, secret, self.dead_letters)
