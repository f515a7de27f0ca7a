"""The chaos runner's models, views and middleware (app label ``chaos``)."""
