/// Additive schema evolution, checked when a sink prepares its tables (as Kafka Connect's JDBC
/// sink with `auto.evolve` and Debezium's with `schema.evolution=basic` do): a configured column
/// the table lacks is added, nullable (rows already there get NULL); anything else that differs
/// is refused before anything is read or written, with a per-column diff. Type changes are
/// refused because the rows already stored hold values of the old type: converting them in
/// place can fail half-way or lose precision, and a reader of the table would see one column
/// with two meanings. A column removed from the configuration stays in the table (new rows
/// leave it NULL).

/// One column of an existing table, as the database describes it.
struct ExistingColumn: Sendable, Equatable {
    var name: String
    /// The column's type as the database names it (SQLite's declared type, PostgreSQL's `data_type`).
    var type: String
    var notNull: Bool

    init(name: String, type: String, notNull: Bool) {
        self.name = name
        self.type = type
        self.notNull = notNull
    }
}

/// A configured column added to an existing table.
package struct SchemaChange: Sendable, Equatable, CustomStringConvertible {
    package var table: String
    package var column: String
    package var type: String
    package var description: String { "table \(table): added column \(column) (\(type), nullable; rows already there have NULL)" }
}

/// One difference between a table and its configuration that Genetika will not bridge.
struct ColumnDifference: Sendable, Equatable, CustomStringConvertible {
    var table: String
    var column: String
    var inDatabase: String
    var inConfig: String
    var description: String { "  \(table).\(column): in the database \(inDatabase); in the config \(inConfig)" }
}

/// The tables do not match the configuration in a way additive evolution cannot fix.
package struct SchemaMismatch: Error, Sendable, CustomStringConvertible {
    package var database: String
    var differences: [ColumnDifference]
    package var description: String {
        "the tables in \(database) do not match the configuration (only new nullable columns are added; types, keys and NOT NULL are never changed):\n"
            + differences.map(\.description).joined(separator: "\n")
    }
}

/// What additive evolution will do to a sink's tables: every existing table is compared with its
/// configuration first, and nothing changes if any of them differs in a way it cannot bridge.
struct SchemaPlan {
    let additions: [(table: TableSchema, columns: [TableSchema.Column])]

    /// Compares each of `sources` that exists (`describe` gives its columns and key; no columns:
    /// not created yet) with its configuration, the types named as `describe` names them
    /// (`comparedAs`). Throws `SchemaMismatch` with every refused difference of every table.
    init(sources: [TableSchema], database: String, comparedAs: (ColumnType) -> String,
         describe: (TableSchema) throws -> (columns: [ExistingColumn], key: String?)) throws {
        var additions: [(table: TableSchema, columns: [TableSchema.Column])] = []
        var refused: [ColumnDifference] = []
        for source in sources {
            let (existing, key) = try describe(source)
            guard !existing.isEmpty else { continue }
            let (added, differences) = source.evolution(existing: existing, key: key, sqlType: comparedAs)
            refused += differences
            if !added.isEmpty { additions.append((source, added)) }
        }
        if !refused.isEmpty { throw SchemaMismatch(database: database, differences: refused) }
        self.additions = additions
    }

    /// Adds the planned columns (`ALTER TABLE … ADD COLUMN`, run by `execute`) and says what changed.
    func apply(sqlType: (ColumnType) -> String, execute: (String) throws -> Void) throws -> [SchemaChange] {
        var changes: [SchemaChange] = []
        for (source, added) in additions {
            for column in added {
                try execute("ALTER TABLE \(quoteIdentifier(source.table)) ADD COLUMN \(quoteIdentifier(column.name)) \(sqlType(column.type))")
                changes.append(SchemaChange(table: source.table, column: column.name, type: sqlType(column.type)))
            }
        }
        return changes
    }
}

extension TableSchema {
    /// What to add to `existing` (this table as the database has it), or the differences that
    /// refuse it. `sqlType` names a configured type as the database does; `key` is the table's
    /// key column in the database (nil: none found).
    func evolution(existing: [ExistingColumn], key existingKey: String?, sqlType: (ColumnType) -> String)
        -> (added: [Column], refused: [ColumnDifference]) {
        var added: [Column] = []
        var refused: [ColumnDifference] = []
        let byName = Dictionary(existing.map { ($0.name.lowercased(), $0) }, uniquingKeysWith: { first, _ in first })
        if existingKey?.lowercased() != key.lowercased() {
            refused.append(ColumnDifference(table: table, column: key, inDatabase: existingKey.map { "key \($0)" } ?? "no unique key",
                                            inConfig: "key \(key)"))
        }
        for column in columns {
            let wanted = sqlType(column.type)
            guard let have = byName[column.name.lowercased()] else {
                if column.name == key || !column.nullable {
                    refused.append(ColumnDifference(table: table, column: column.name, inDatabase: "absent",
                                                    inConfig: "\(wanted) NOT NULL (a new column must be nullable: rows already there have no value)"))
                } else {
                    added.append(column)
                }
                continue
            }
            if have.type.uppercased() != wanted.uppercased() {
                refused.append(ColumnDifference(table: table, column: column.name, inDatabase: have.type, inConfig: "\(wanted) (\(column.type.rawValue))"))
            } else if have.notNull && column.nullable && column.name != key {
                refused.append(ColumnDifference(table: table, column: column.name, inDatabase: "\(have.type) NOT NULL",
                                                inConfig: "\(wanted), nullable"))
            }
        }
        return (added, refused)
    }
}
