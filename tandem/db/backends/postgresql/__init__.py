"""PostgreSQL through psycopg 3, with network waits awaited inside the bridge."""
