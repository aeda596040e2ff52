"""The lab: a throwaway Forgejo, runners of any version and a Docker engine."""
