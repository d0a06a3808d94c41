"""The revisions, oldest first: ``r0001_...``, ``r0002_...``; see ``env.py`` for how to add one."""
