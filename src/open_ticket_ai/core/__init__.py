"""The core: config, registry, templates, pipes and orchestration."""
