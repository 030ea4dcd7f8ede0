"""The journal: everything accepted, durably on local disk, in segments each shipper reads by
offset (DESIGN.md, "Pipeline, journal and backpressure")."""
