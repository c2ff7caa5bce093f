"""Per-environment settings: ``config/environments.toml`` parsed into frozen, validated dataclasses."""

from config.settings import (
    ComputeSettings,
    ConfigError,
    DataSettings,
    EnvironmentConfig,
    FeatureStoreSettings,
    NetworkSettings,
    OperationsSettings,
    PlatformConfig,
    ServingSettings,
    ToolingConfig,
    TrainingSettings,
    VariantSettings,
    check_instance_type,
    is_gpu_instance,
    load_config,
    parse_config,
)

__all__ = [
    "ComputeSettings",
    "ConfigError",
    "DataSettings",
    "EnvironmentConfig",
    "FeatureStoreSettings",
    "NetworkSettings",
    "OperationsSettings",
    "PlatformConfig",
    "ServingSettings",
    "ToolingConfig",
    "TrainingSettings",
    "VariantSettings",
    "check_instance_type",
    "is_gpu_instance",
    "load_config",
    "parse_config",
]
