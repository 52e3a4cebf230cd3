-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d),
-- as POSTGRES_USER (baton). One database per service; BATON_DATABASE_URL's {service}
-- placeholder expands to these names.
CREATE DATABASE baton_lead_ingest OWNER baton;
CREATE DATABASE baton_scoring OWNER baton;
CREATE DATABASE baton_handoff OWNER baton;
CREATE DATABASE baton_metrics OWNER baton;
