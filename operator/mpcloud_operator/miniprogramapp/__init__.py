"""MiniProgramApp: the cloud-hosting custom resource (model → resources → handlers)."""
