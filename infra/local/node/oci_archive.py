"""Pack one static program into a single-layer OCI image archive.

usage: python3 infra/local/node/oci_archive.py PROGRAM REF OUTPUT.tar [ARG...]

The archive is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256``)
in a tar, as ``ctr images import`` reads it. The layer holds PROGRAM as ``/NAME``
(its base name), the image's entrypoint is ``/NAME ARG...``. The image is named REF
(``localhost/ferryman-pause:1``) through the ``io.containerd.image.name`` annotation,
which containerd's importer reads before the OCI ``ref.name``.

Every timestamp and owner is fixed, so the same program gives the same digests.
Standard library only: kube-node.sh runs it with the machine's python3.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
EPOCH = 0


def _tar(entries: dict[str, tuple[bytes, int]]) -> bytes:
    """A deterministic tar of ``name -> (content, mode)``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (content, mode) in sorted(entries.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), mode, EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
    }


def image_archive(program: Path, ref: str, args: list[str]) -> bytes:
    name = program.name
    layer = _tar({name: (program.read_bytes(), 0o755)})
    layer_descriptor = _descriptor(OCI_LAYER, layer)
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": [f"/{name}", *args], "WorkingDir": "/"},
            # An uncompressed layer's diff ID is its own digest.
            "rootfs": {"type": "layers", "diff_ids": [layer_descriptor["digest"]]},
            "history": [{"created_by": f"ferryman oci_archive.py {name}"}],
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(OCI_CONFIG, config),
            "layers": [layer_descriptor],
        }
    )
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = _json(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    **_descriptor(OCI_MANIFEST, manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
    )
    blobs = {
        f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}": (blob, 0o644)
        for blob in (layer, config, manifest)
    }
    return _tar(
        {
            "oci-layout": (_json({"imageLayoutVersion": "1.0.0"}), 0o644),
            "index.json": (index, 0o644),
            **blobs,
        }
    )


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    program, ref, output = Path(argv[0]), argv[1], Path(argv[2])
    archive = image_archive(program, ref, argv[3:])
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(archive)
    partial.replace(output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
