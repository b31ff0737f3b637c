"""The container images of the one-node test cluster, built here without a registry (images/build.py; run by
scripts/build-node-images), and the stand-ins they use where Debian bookworm differs from upstream
(images/standins.py)."""
