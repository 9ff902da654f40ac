"""Retention: policies, legal holds, archive stores and purge jobs. The embedded store keeps everything
for now; this package is where archiving to a local folder or S3 and policy-driven purging will live."""
