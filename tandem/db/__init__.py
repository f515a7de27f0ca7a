"""tandem's database backends and the pieces they share."""
