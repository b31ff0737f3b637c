"""One Airflow instance per stack: `pulumi up` runs this file; the composition is in components/instance.py."""

from components.instance import airflow_instance

airflow_instance()
