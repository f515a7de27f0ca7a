"""MariaDB and MySQL through mysqlclient, one worker thread per connection."""
