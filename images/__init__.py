"""The container images of the one-node test cluster, built here without a registry (run by
scripts/build-node-images): images/build.py runs the build over images/specs.py (the images, their references and
cache keys), images/base.py (the Debian base per suite), images/chroot.py (mounts, chroot), images/archive.py
(layers, docker-archives) and images/common.py (paths, cache location, errors); and the stand-ins they use where
Debian differs from upstream (images/standins.py)."""
