"""How the api-server is reached: its Service, which task pods call for the Execution API, and with
`ingress.enabled` an Ingress for the UI and the public API, whose Execution API path leads nowhere.

AirflowControlPlane creates these objects as its children; the functions here only shape them.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.settings.sections import IngressSettings
from components.kube import API_SERVER


def api_service(
    name: str, instance: str, metadata: k8s.meta.v1.ObjectMetaArgs, opts: pulumi.ResourceOptions
) -> k8s.core.v1.Service:
    return k8s.core.v1.Service(
        name,
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            selector=kube.selector_labels(instance, API_SERVER),
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=kube.API_SERVER_PORT, target_port="http")],
        ),
        opts=opts,
    )


def closed_service(name: str, metadata: k8s.meta.v1.ObjectMetaArgs, opts: pulumi.ResourceOptions) -> k8s.core.v1.Service:
    """A Service that selects no pod: the Ingress sends the Execution API's path here, so the public
    endpoint answers it with an error. Task pods reach the Execution API through the api-server Service."""
    return k8s.core.v1.Service(
        name,
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(ports=[k8s.core.v1.ServicePortArgs(name="http", port=kube.API_SERVER_PORT)]),
        opts=opts,
    )


def execution_api_path(ingress: IngressSettings) -> str:
    return f"{ingress.path.rstrip('/')}/execution"


def ingress(
    name: str,
    ingress: IngressSettings,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    service: k8s.core.v1.Service,
    closed: k8s.core.v1.Service,
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.Ingress:
    return k8s.networking.v1.Ingress(
        name,
        metadata=metadata,
        spec=k8s.networking.v1.IngressSpecArgs(
            ingress_class_name=ingress.class_name,
            tls=[k8s.networking.v1.IngressTLSArgs(hosts=[ingress.host], secret_name=ingress.tls_secret_name)]
            if ingress.tls_secret_name
            else None,
            rules=[
                k8s.networking.v1.IngressRuleArgs(
                    host=ingress.host,
                    http=k8s.networking.v1.HTTPIngressRuleValueArgs(
                        # The longest matching prefix wins, so /execution goes nowhere and the rest to the UI/API.
                        paths=[_path(ingress.path, service), _path(execution_api_path(ingress), closed)]
                    ),
                )
            ],
        ),
        opts=opts,
    )


def _path(path: str, service: k8s.core.v1.Service) -> k8s.networking.v1.HTTPIngressPathArgs:
    return k8s.networking.v1.HTTPIngressPathArgs(
        path=path,
        path_type="Prefix",
        backend=k8s.networking.v1.IngressBackendArgs(
            service=k8s.networking.v1.IngressServiceBackendArgs(
                name=service.metadata.name, port=k8s.networking.v1.ServiceBackendPortArgs(name="http")
            )
        ),
    )
