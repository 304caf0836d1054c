"""SSH bastion that lets AI coding agents work on Azure VMs safely."""

__version__ = "0.1.0"
