"""The test node's certificates and credentials, made fresh for every cluster with `cryptography`.

One CA signs the API server's serving certificate (which the CloudNativePG operator's webhook server also
presents: both listen on the node's bridge address) and the client certificate the API server shows the
kubelet. Every other client authenticates with a bearer token from the API server's token file, which is
what the Node and RBAC authorizers need: a user name and groups.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

VALID_FOR = datetime.timedelta(days=2)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


@dataclass
class Credentials:
    """Paths of what the node's processes read, all under one private directory."""

    directory: Path
    ca: Path = field(init=False)
    serving_cert: Path = field(init=False)
    serving_key: Path = field(init=False)
    kubelet_client_cert: Path = field(init=False)
    kubelet_client_key: Path = field(init=False)
    service_account_key: Path = field(init=False)
    token_file: Path = field(init=False)
    tokens: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        d = self.directory
        self.ca, self.serving_cert, self.serving_key = d / "ca.crt", d / "apiserver.crt", d / "apiserver.key"
        self.kubelet_client_cert, self.kubelet_client_key = d / "kubelet-client.crt", d / "kubelet-client.key"
        self.service_account_key, self.token_file = d / "sa.key", d / "tokens.csv"


# Who talks to the API server, as (user, groups): the Node authorizer wants system:node:<name> in system:nodes,
# and the built-in RBAC bindings name the controller manager, scheduler and kube-proxy users. kube-router (the
# NetworkPolicy enforcer) and the CloudNativePG operator get their own users; the fixture binds them to what
# they need.
def identities(node_name: str) -> dict[str, tuple[str, list[str]]]:
    return {
        "admin": ("admin", ["system:masters"]),
        "kubelet": (f"system:node:{node_name}", ["system:nodes"]),
        "controller-manager": ("system:kube-controller-manager", []),
        "scheduler": ("system:kube-scheduler", []),
        "kube-proxy": ("system:kube-proxy", []),
        "kube-router": ("kube-router", []),
        "cnpg-operator": ("cnpg-operator", []),
    }


def make(directory: Path, node_name: str, server_ips: list[str], server_names: list[str]) -> Credentials:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    creds = Credentials(directory)
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("airflow-platform test node CA")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    creds.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(cert_path: Path, key_path: Path, subject: x509.Name, usage, sans=None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert_path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        key_path.chmod(0o600)

    sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips] + [x509.DNSName(n) for n in server_names]
    issue(creds.serving_cert, creds.serving_key, _name("kube-apiserver"), x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, sans)
    issue(creds.kubelet_client_cert, creds.kubelet_client_key, _name("kube-apiserver-kubelet-client", "system:masters"),
          x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    creds.service_account_key.write_bytes(_key_pem(sa_key))
    creds.service_account_key.chmod(0o600)

    lines = []
    for client, (user, groups) in identities(node_name).items():
        creds.tokens[client] = secrets.token_urlsafe(32)
        lines.append(f'{creds.tokens[client]},{user},{user},"{",".join(groups)}"')
    creds.token_file.write_text("\n".join(lines) + "\n")
    creds.token_file.chmod(0o600)
    return creds


def self_signed(common_name: str, dns_names: list[str], usage) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key (PEM), as cert-manager's selfSigned issuer makes them: the Barman
    Cloud plugin's gRPC server and its one client (the CloudNativePG operator) each trust the other's certificate
    itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)
