"""Configuration of the ``redact`` transform."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEFAULT_RULES", "Defaults", "RedactConfig", "Rule"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Frozen):
    """One masking rule: every match of ``regex`` is replaced by ``replacement``."""

    name: str = Field(
        min_length=1, description="Rule name, the `rule` label of ferryman_redactions_total."
    )
    regex: str = Field(description="Python regular expression, searched anywhere in the text.")
    replacement: str = Field(
        "***",
        description="What a match becomes (default `***`); "
        r"`\g<1>` or `\g<name>` put a group back.",
    )

    @model_validator(mode="after")
    def _compiles(self) -> Rule:
        try:
            # Compiling the replacement checks its group references too.
            re.compile(self.regex).sub(self.replacement, "")
        except (re.error, IndexError) as exc:
            raise ValueError(f"rule {self.name}: {exc}") from exc
        return self


#: The rules on by default, applied in this order (passwords in URLs before e-mail
#: addresses, so ``user:pass@host`` is not taken for an address).
DEFAULT_RULES: dict[str, Rule] = {
    "bearer_token": Rule(
        name="bearer_token",
        regex=r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*",
        replacement=r"\g<1>***",
    ),
    "query_token": Rule(
        name="query_token",
        regex=r"(?i)(\b[\w.-]*(?:token|api[_-]?key|apikey|secret|password|passwd)=)"
        r"(?:\"[^\"]*\"|[^&\s\"',;]+)",
        replacement=r"\g<1>***",
    ),
    "url_password": Rule(
        name="url_password",
        regex=r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]+:)[^@/?#\s]+@",
        replacement=r"\g<1>***@",
    ),
    "email": Rule(
        name="email",
        regex=r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
        replacement="***@***",
    ),
}


class Defaults(_Frozen):
    """Which default rules are on (all by default)."""

    bearer_token: bool = Field(
        True, description="`Authorization: Bearer x`, `bearer x` → `Bearer ***` (default on)."
    )
    query_token: bool = Field(
        True,
        description="`token=`, `access_token=`, `api_key=`, "
        "`secret=`, `password=`… values, bare or double-quoted as "
        "in logfmt → `***` (default on).",
    )
    url_password: bool = Field(
        True, description="`scheme://user:pass@host` → `scheme://user:***@host` (default on)."
    )
    email: bool = Field(True, description="E-mail addresses → `***@***` (default on).")


class RedactConfig(_Frozen):
    """Mask secrets and personal data in log lines (and structured metadata values):
    the enabled default rules first, then ``rules``, each over the result of the
    one before."""

    defaults: Defaults = Field(default_factory=Defaults, description="Default rules on/off.")
    rules: tuple[Rule, ...] = Field(
        (), description="Own rules, applied after the defaults, in order (default none)."
    )
    metadata: bool = Field(True, description="Also mask structured metadata values (default true).")

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        names = [rule.name for rule in rules]
        clash = {n for n in names if names.count(n) > 1} | (set(names) & set(DEFAULT_RULES))
        if clash:
            raise ValueError(f"rule names must be unique and not a default's: {sorted(clash)}")
        return rules

    def active_rules(self) -> list[Rule]:
        on = self.defaults.model_dump()
        return [rule for name, rule in DEFAULT_RULES.items() if on[name]] + list(self.rules)
