"""Pure parts of the local cluster: node plan and node manifests."""

from __future__ import annotations

import pytest

from mpcloud_operator.devenv.cluster import local


def test_node_plan_keeps_two_kata_and_one_plain():
    assert local.NodePlan.from_total(3) == local.NodePlan(kata=2, plain=1)
    assert local.NodePlan.from_total(10) == local.NodePlan(kata=7, plain=3)
    with pytest.raises(local.ClusterError):
        local.NodePlan.from_total(2)


def test_node_manifest_is_kwok_managed_and_labelled():
    kata = local.node_manifest("k", kata=True)
    plain = local.node_manifest("p", kata=False)
    assert kata["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert kata["metadata"]["labels"][local.KATA_LABEL] == "true"
    assert local.KATA_LABEL not in plain["metadata"]["labels"]
    assert kata["status"]["allocatable"]["cpu"] == "16"
