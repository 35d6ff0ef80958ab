"""The core: what keeps models resident or free, and nothing about HTTP.

One owner task per model (``lifecycle``, its states in ``model_states``, its engine transitions in
``transitions``), the device arbiter that decides residency across models, engine handles and the
zygote client that start engines, the registry of every child process, GPU facts from NVML, the
service that holds them all, settings and metrics. Imports only ``ipc`` and itself.
"""
