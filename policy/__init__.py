"""The airflow-platform policy pack (run by `pulumi preview/up --policy-pack policy`); the rules are in rules.py."""
