"""Operator configuration: one settings object, read from the environment (MPCLOUD_*) or CLI flags."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field

GROUP = "mpcloud.io"
VERSION = "v1alpha1"
FIELD_MANAGER = "mpcloud"  # the reconciler: children, its status conditions and counts
SCALER_FIELD_MANAGER = "mpcloud-scaler"  # the scaling loop: Deployment spec.replicas, ScalingDegraded, forecast
POOL_FIELD_MANAGER = "mpcloud-warmpool"  # the warm pools: their Deployments (size included), token Secrets
TRIGGER_FIELD_MANAGER = "mpcloud-triggers"  # pipeline triggers: the PipelineRuns they create (and cancel)
DEPLOY_FIELD_MANAGER = "mpcloud-pipeline"  # pipeline deploy/canary tasks: an app's image, a function's source
RISK_SCAN_FIELD_MANAGER = "mpcloud-risk-scan"  # RiskPolicy scans: PolicyReports, status.findings.scans, lastScanTime
RISK_TRAFFIC_FIELD_MANAGER = "mpcloud-risk-traffic"  # RiskPolicy traffic detector: status.findings.traffic


class OperatorConfig(BaseModel):
    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty = cluster-wide.")
    health_port: int = 8081
    metrics_port: int = 8080
    bind_address: str = "0.0.0.0"
    prometheus_url: str | None = Field(default=None, description="Prometheus-compatible HTTP API for the scaling "
                                       "loop; unset = no predictive/scheduled scaling.")
    worker_limit: int = Field(default=0, ge=0, description="Concurrent kopf object workers (0 = unlimited).")
    workers: int = Field(default=8, ge=1, le=256, description="Reconcile worker threads (objects in flight).")
    lease_name: str = "mpcloud-operator"
    lease_namespace: str = "mpcloud-system"
    # CloudFunction: the runtime image, the gateway, and the backing services functions bind to.
    function_image: str = Field(default="ghcr.io/mpcloud/function-runtime:0.1.0", description="Runtime image of "
                                "functions (both languages; `mpcloud image build` makes mpcloud.local/function-runtime).")
    function_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Pull policy of the runtime image; unset = IfNotPresent for a digest reference, "
        "Always for a tag (a local image imported without a registry needs IfNotPresent).")

    @property
    def function_pull_policy(self) -> str:
        return self.function_image_pull_policy or ("IfNotPresent" if "@" in self.function_image else "Always")

    gateway_url: str = Field(default="http://mpcloud-gateway.mpcloud-system.svc", description="Base URL of the "
                             "function gateway, for status.url.")
    demand_port: int = Field(default=8082, description="Port of the operator's /demand endpoint (the gateway pushes "
                             "scale-from-zero demand to it).")
    webhook_port: int = Field(default=8083, description="Port of the operator's Git webhook endpoint "
                              "(/hooks/git/<namespace>/<pipeline>[/<trigger>]; leader only).")
    postgres_admin_dsn: str | None = Field(default=None, description="PostgreSQL superuser DSN for provisioning "
                                           "databases and roles; unset = database bindings are refused.")
    postgres_function_host: str | None = Field(default=None, description="host:port function pods use to reach "
                                               "PostgreSQL (default: the admin DSN's).")
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint for provisioning buckets and keys; "
                                    "unset = storage bindings are refused.")
    s3_function_endpoint: str | None = Field(default=None, description="S3 endpoint as function pods reach it.")
    s3_public_endpoint: str | None = Field(default=None, description="S3 endpoint for pre-signed URLs (clients).")
    s3_admin_access_key: str | None = None
    s3_admin_secret_key: str | None = None
    unsandboxed_node_pool: str | None = Field(default=None, pattern=r"^[-./a-zA-Z0-9]+=[-._a-zA-Z0-9]*$",
                                              description="key=value: functions that opt out of the sandbox run "
                                              "only on nodes with this label, tolerating a NoSchedule taint of it.")
    function_minute_seconds: float = Field(default=60.0, gt=0, le=3600, description="Length of the function "
                                           "scaler's keep-alive minute (tests and trace replays compress time).")
    credential_sweep_seconds: float = Field(default=300.0, ge=1, le=86400, description="Period of the sweep that "
                                            "drops function roles and S3 keys whose function or binding is gone.")
    keepalive_save_seconds: float = Field(default=180.0, ge=1, le=86400, description="How often the leader saves "
                                          "the functions' keep-alive history (ConfigMap in the lease namespace).")
    pipeline_helper_image: str = Field(default="ghcr.io/mpcloud/mpcloud-operator:0.1.0", description="Image with "
                                       "python3 that packs a pipeline task's results into its termination message "
                                       "(locally: mpcloud.local/debian-python).")
    admission_port: int = Field(default=0, ge=0, le=65535, description="Port of the RiskPolicy admission "
                                "webhooks (TLS; every replica serves them; manifests/operator.yaml: 8443); 0 = none.")
    admission_url: str | None = Field(default=None, pattern=r"^https://", description="URL the API server calls "
                                      "the webhooks at (a local control plane: https://127.0.0.1:<port>); unset = "
                                      "the mpcloud-webhook Service in the operator's namespace.")
    admission_cert_seconds: float = Field(default=90 * 86400, ge=60, description="Lifetime of the webhook serving "
                                          "certificate; renewed when a third of it is left.")
    admission_cert_check_seconds: float = Field(default=3600, ge=1, description="How often each replica re-reads "
                                                "the webhook certificate Secret (and renews it when due).")
    admission_timeout_seconds: int = Field(default=5, ge=1, le=30, description="timeoutSeconds of the webhooks.")
    risk_scan_seconds: float = Field(default=300.0, gt=0, le=86400, description="How often the leader looks for "
                                     "changed objects to scan for RiskPolicies (a policy's full rescan follows its "
                                     "spec.scans.intervalSeconds; a changed policy is scanned at once).")
    risk_traffic_seconds: float = Field(default=15.0, gt=0, le=3600, description="Tick of the abnormal-traffic "
                                        "detector: one request rate per app and function per tick.")
    risk_traffic_cooldown_seconds: float = Field(default=600.0, ge=0, le=86400, description="After an alarm, a "
                                                 "series raises no new finding for this long (one burst, one finding).")
    risk_traffic_open_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400, description="How long an "
                                             "abnormal-traffic finding stays in the PolicyReport and status.")
    risk_traffic_replay: str | None = Field(default=None, description="A JSON file of request series "
                                            "({\"<Kind>/<namespace>/<name>\": [rate, ...]}) the detector reads "
                                            "instead of Prometheus and the gateway (replays and tests).")
    binding_key: str | None = Field(default=None, description="Secret the per-function database passwords and S3 "
                                    "keys are derived from (HMAC): stable across restarts, rotated by changing it.")
    pool_key: str | None = Field(default=None, min_length=16, description="Secret the warm pools' specialise "
                                 "tokens are derived from (HMAC per pool; the gateway holds the same key). Unset: no "
                                 "warm pools.")
    warm_pool_min: int = Field(default=1, ge=0, le=100, description="Pods of a warm pool while any function wants it.")
    warm_pool_max: int = Field(default=5, ge=1, le=100, description="Most pods of one warm pool.")
    warm_pool_horizon_minutes: int = Field(default=2, ge=1, le=60, description="Keep-alive minutes ahead whose "
                                           "expected cold starts size the warm pools.")

    @classmethod
    def from_env(cls, **overrides: object) -> OperatorConfig:
        # Secrets as files (a mounted Secret): each file named MPCLOUD_* in MPCLOUD_CONFIG_DIR is a setting, so
        # credentials (admin DSN, S3 keys, binding key) need not sit in the process environment.
        config_dir = os.environ.get("MPCLOUD_CONFIG_DIR")
        files = {}
        if config_dir and os.path.isdir(config_dir):
            for name in os.listdir(config_dir):
                path = os.path.join(config_dir, name)
                if name.startswith("MPCLOUD_") and os.path.isfile(path):
                    with open(path) as f:
                        files[name] = f.read().strip()
        environ = {**files, **os.environ}
        env = {
            "namespaces": [n for n in environ.get("MPCLOUD_NAMESPACES", "").split(",") if n],
            "health_port": environ.get("MPCLOUD_HEALTH_PORT"),
            "metrics_port": environ.get("MPCLOUD_METRICS_PORT"),
            "bind_address": environ.get("MPCLOUD_BIND_ADDRESS"),
            "prometheus_url": environ.get("MPCLOUD_PROMETHEUS_URL"),
            "lease_namespace": environ.get("MPCLOUD_LEASE_NAMESPACE"),
            "worker_limit": environ.get("MPCLOUD_WORKER_LIMIT"),
            "workers": environ.get("MPCLOUD_WORKERS"),
            "lease_name": environ.get("MPCLOUD_LEASE_NAME"),
            **{name: environ.get("MPCLOUD_" + name.upper()) for name in (
                "function_image", "function_image_pull_policy", "gateway_url", "demand_port", "webhook_port", "postgres_admin_dsn",
                "postgres_function_host",
                "s3_endpoint", "s3_function_endpoint", "s3_public_endpoint", "s3_admin_access_key",
                "s3_admin_secret_key", "binding_key", "function_minute_seconds", "unsandboxed_node_pool",
                "credential_sweep_seconds", "keepalive_save_seconds", "pipeline_helper_image", "admission_port",
                "admission_url", "admission_cert_seconds", "admission_cert_check_seconds", "admission_timeout_seconds",
                "risk_scan_seconds", "risk_traffic_seconds", "risk_traffic_cooldown_seconds",
                "risk_traffic_open_seconds", "risk_traffic_replay",
                "pool_key", "warm_pool_min", "warm_pool_max", "warm_pool_horizon_minutes")},
        }
        values = {k: v for k, v in env.items() if v not in (None, [])}
        values.update({k: v for k, v in overrides.items() if v not in (None, (), [])})
        return cls.model_validate(values)
