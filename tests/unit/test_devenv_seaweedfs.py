"""The local SeaweedFS's command lines (devenv/seaweedfs.py)."""

from pathlib import Path

from mpcloud_operator.devenv.seaweedfs import gateway_args


def test_an_extra_s3_gateway_gets_an_explicit_grpc_port():
    # weed's default gRPC port is the S3 port + 10000: an S3 port from the ephemeral range (60317 in a CI run)
    # made the gateway exit with "listen tcp: address 70317: invalid port".
    args = gateway_args(Path("/state"), {"filer": 8888, "filer_grpc": 18888, "s3": 60317}, "10.128.0.1", 40123)
    assert "-port=60317" in args and "-port.grpc=40123" in args and "-ip.bind=10.128.0.1" in args
