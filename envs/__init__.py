"""Short-lived Airflow environments, one Pulumi stack per git branch: `python -m envs --help`."""
