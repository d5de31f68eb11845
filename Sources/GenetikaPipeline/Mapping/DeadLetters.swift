import GenetikaJSON
import GenetikaKafka
import GenetikaStorage
import GenetikaSupport
import GenetikaXlsx

/// Dead letters as `genetika dead-letters` lists and replays them.
///
/// The producer's dead letters hold the row's original cells (`cells`: header → the cell,
/// typed: text, number, boolean, `{"date": …}`, `{"datetime": …}`, `{"error": …}`, null for an
/// empty cell), the DB stage's the event as it was consumed (key and value). A replay checks
/// each one against the current configuration (the row's cells through the source's columns,
/// or the event through its table's decoder) and sends those that now pass to their topic,
/// recording each in the ledger; one already recorded is not sent again.
package enum DeadLetters {
    /// One dead letter.
    package struct Entry: Sendable {
        package var place: String
        package var partition: Int32
        var offset: Int64
        package var stage: String
        package var file: String?
        package var row: Int?
        package var topic: String?
        package var reason: String
        package var timestampMs: Int64?
        package var message: KafkaMessage
        package var replayed: Bool
    }

    /// A cell as the dead letter keeps it.
    package static func json(_ cell: CellValue) -> JSONValue {
        switch cell {
        case .empty: .null
        case .integer(let v): .int(v)
        case .number(let v): .double(v)
        case .string(let v): .string(v)
        case .boolean(let v): .bool(v)
        case .dateTime(let v): .object(JSONObject([(v.hasTime ? "datetime" : "date", .string(v.hasTime ? v.isoDateTime : v.isoDate))]))
        case .error(let v): .object(JSONObject([("error", .string(v))]))
        }
    }

    /// The cell a dead letter's JSON value stands for.
    static func cell(_ value: JSONValue) -> CellValue {
        switch value {
        case .null: .empty
        case .int(let v): .integer(v)
        case .double(let v): .number(v)
        case .string(let v): .string(v)
        case .bool(let v): .boolean(v)
        case .object(let object):
            if case .string(let text)? = object["date"] ?? object["datetime"], let parsed = SpreadsheetDateTime(iso: text) { .dateTime(parsed) }
            else if case .string(let text)? = object["error"] { .error(text) }
            else { .string(JSONWriter.string(value)) }
        case .array: .string(JSONWriter.string(value))
        }
    }

    /// Every dead letter in the topic, oldest first.
    package static func list(_ configuration: GenetikaConfiguration, ledgerPath: String) throws -> [Entry] {
        let ledger = try DeadLetterLedger(path: ledgerPath)
        defer { ledger.close() }
        let replayed = try ledger.replayed()
        var entries: [Entry] = []
        try TopicSnapshot(configuration: KafkaClientConfiguration(configuration.kafka)).read([configuration.topics.deadLetter]) { message in
            let place = "\(message.topic)[\(message.partition)]@\(message.offset)"
            let stage = message.header(GenetikaHeader.stage)?.text ?? "?"
            var entry = Entry(place: place, partition: message.partition, offset: message.offset, stage: stage,
                              file: message.header(GenetikaHeader.sourceFile)?.text,
                              row: message.header(GenetikaHeader.sourceRow)?.text.flatMap { Int($0) },
                              topic: message.header(GenetikaHeader.sourceTopic)?.text,
                              reason: message.header(GenetikaHeader.error)?.text ?? "?", timestampMs: message.timestamp,
                              message: message, replayed: replayed.contains(place))
            if stage == "producer", case .object(let payload)? = try? JSONParser.parse(message.value), case .string(let topic)? = payload["topic"] {
                entry.topic = topic
            }
            entries.append(entry)
        }
        return entries.sorted { ($0.timestampMs ?? 0, $0.partition, $0.offset) < ($1.timestampMs ?? 0, $1.partition, $1.offset) }
    }

    /// What a replay did with one dead letter.
    package enum Outcome: Sendable {
        case sent(to: String)
        case stillFailing(String)
        case alreadyReplayed
    }

    /// The event a dead letter would become now, or why it still fails.
    static func revive(_ entry: Entry, configuration: GenetikaConfiguration) -> Result<OutgoingMessage, RowRejection> {
        func fail(_ reason: String) -> Result<OutgoingMessage, RowRejection> { .failure(RowRejection(row: entry.row ?? 0, reason: reason)) }
        guard let topic = entry.topic, let source = configuration.sources.first(where: { $0.topic == topic }) else {
            return fail("no source of the configuration sends to \(entry.topic ?? "(no topic recorded)")")
        }
        var headers = [KafkaHeader("genetika-replayed-from", entry.place)]
        if let file = entry.file { headers.append(KafkaHeader(GenetikaHeader.sourceFile, file)) }
        if let row = entry.row { headers.append(KafkaHeader(GenetikaHeader.sourceRow, String(row))) }
        switch entry.stage {
        case "producer":
            guard case .object(let payload)? = try? JSONParser.parse(entry.message.value), case .object(let cells)? = payload["cells"] else {
                return fail("this dead letter does not keep its row's cells by header (written by an earlier Genetika)")
            }
            let members = Array(cells)
            let header = XlsxRow(number: 1, cells: members.map { .string($0.key) })
            let row = XlsxRow(number: entry.row ?? 2, cells: members.map { cell($0.value) })
            do {
                let mapper = try RowMapper(source: source, header: header, file: entry.file ?? "dead letter")
                let values = try mapper.values(of: row)
                return .success(OutgoingMessage(topic: topic, key: Array(mapper.key(of: values).utf8), value: mapper.event(of: values),
                                                timestamp: nowMilliseconds(), headers: headers))
            } catch let error as RowRejection {
                return .failure(error)
            } catch {
                return fail("\(error)")
            }
        case "db":
            do {
                _ = try EventDecoder(source: source).decode(entry.message.value)
                return .success(OutgoingMessage(topic: topic, key: entry.message.key, value: entry.message.value,
                                                timestamp: nowMilliseconds(), headers: headers))
            } catch {
                return fail(error.reason)
            }
        default:
            return fail("a dead letter of the \(entry.stage) stage is not replayable (\(entry.reason))")
        }
    }

    /// Replays every dead letter not replayed yet: sends those that pass now and records them.
    package static func replay(_ entries: [Entry], configuration: GenetikaConfiguration, ledgerPath: String,
                              producer: KafkaProducer) async throws -> [(Entry, Outcome)] {
        let ledger = try DeadLetterLedger(path: ledgerPath)
        defer { ledger.close() }
        var outcomes: [(Entry, Outcome)] = []
        for entry in entries {
            if entry.replayed {
                outcomes.append((entry, .alreadyReplayed))
                continue
            }
            switch revive(entry, configuration: configuration) {
            case .success(let message):
                let reports = try await producer.sendAll([message])
                if let error = reports.first?.error { throw error }
                try ledger.record(topic: entry.message.topic, partition: entry.partition, offset: entry.offset, sentTo: message.topic,
                                  at: nowMilliseconds())
                outcomes.append((entry, .sent(to: message.topic)))
            case .failure(let rejection):
                outcomes.append((entry, .stillFailing(rejection.cell.map { "\($0): \(rejection.reason)" } ?? rejection.reason)))
            }
        }
        return outcomes
    }
}
