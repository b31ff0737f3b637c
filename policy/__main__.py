"""The airflow-platform policy pack: `pulumi preview --policy-pack policy`.

Every rule of rules.py becomes one mandatory ResourceValidationPolicy. The engine runs this file with the
pack's directory on sys.path (`python -m pulumi.policy policy/`), so rules.py is imported as `rules`.
"""

from pulumi_policy import EnforcementLevel, PolicyPack, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy
from pulumi_policy.proxy import _DictProxy, _is_unknown, _ListProxy

import rules


def plain(value):
    """The engine's props (proxies that raise on unknown values) as plain dicts, unknowns as rules.UNKNOWN."""
    if isinstance(value, (_DictProxy, _ListProxy)):
        value = value["__target"]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if _is_unknown(value):
        return rules.UNKNOWN
    return value


def _policy(name: str, rule, description: str) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        checked = rules.Checked(
            type=args.resource_type,
            props=plain(args.props),
            stack=rules.stack_of_urn(args.urn),
            protect=bool(args.opts.protect),
            name=args.name,
        )
        for message in rule(checked):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(
        name=name, description=description, enforcement_level=EnforcementLevel.MANDATORY, validate=validate
    )


PolicyPack(
    name="airflow-platform",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[_policy(name, rule, description) for name, (rule, description) in rules.RULES.items()],
)
