"""HTTP plumbing shared by every dialect: the aiohttp server and its connection cap, security
headers and API keys, the upload budget, JSON bodies, uploads and remote images, error answers,
request logs and readiness. Imports ``core`` and ``ipc``; never a dialect.
"""
