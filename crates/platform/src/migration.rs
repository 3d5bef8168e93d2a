//! Helpers for the services' sea-orm migrations.

use sea_orm_migration::prelude::{Alias, Index, IndexCreateStatement};

/// An index statement: `name` on `table` over `columns`, unique or not.
pub fn index(name: &str, table: &str, columns: &[&str], unique: bool) -> IndexCreateStatement {
    let mut statement = Index::create();
    statement.name(name).table(Alias::new(table));
    for column in columns {
        statement.col(Alias::new(*column));
    }
    if unique {
        statement.unique();
    }
    statement.take()
}
