import CRdkafka
#if canImport(Glibc)
import Glibc
#endif
import GenetikaSupport

/// A Kafka record header.
package struct KafkaHeader: Sendable, Equatable {
    package var name: String
    package var value: [UInt8]?

    package init(_ name: String, _ value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    package init(_ name: String, _ text: String) {
        self.init(name, Array(text.utf8))
    }

    package var text: String? { value.map { String(decoding: $0, as: UTF8.self) } }
}

/// A record read from Kafka.
package struct KafkaMessage: Sendable {
    package var topic: String
    package var partition: Int32
    package var offset: Int64
    package var key: [UInt8]?
    package var value: [UInt8]
    /// Milliseconds since the Unix epoch (create time, or log-append time if the topic says so).
    package var timestamp: Int64?
    package var headers: [KafkaHeader]

    package init(topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8],
                timestamp: Int64?, headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.headers = headers
    }

    package var topicPartition: TopicPartition { TopicPartition(topic, partition) }
    package var keyText: String? { key.map { String(decoding: $0, as: UTF8.self) } }
    package func header(_ name: String) -> KafkaHeader? { headers.first { $0.name == name } }

    /// Copies a librdkafka message (which the caller still owns and destroys); without
    /// `whole`, only its key and metadata (the value is empty, the headers none). Header
    /// names, and a header's value when it repeats the last one seen under that name, come
    /// from `interning` (shared storage, no allocation).
    init(copying message: UnsafePointer<rd_kafka_message_t>, whole: Bool, headers interning: inout HeaderInterning) {
        let m = message.pointee
        topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        partition = m.partition
        offset = m.offset
        key = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) }
        var type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let ts = rd_kafka_message_timestamp(message, &type)
        timestamp = type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts
        headers = []
        guard whole else {
            value = []
            return
        }
        value = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
        var hdrs: OpaquePointer?
        if rd_kafka_message_headers(message, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(hdrs, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(interning.header(name: name, value: value.map { UnsafeRawBufferPointer(start: $0, count: size) }))
                index += 1
            }
        }
    }
}

/// The header names one consumer has seen, each with the last value seen under it. A
/// consumer's messages carry the same few header names (Genetika's are longer than the 15
/// bytes a Swift string holds inline, so each copy was an allocation) and often the same value
/// (the source file): those copies share one string or array instead.
struct HeaderInterning {
    private var known: [(name: [UInt8], text: String, value: [UInt8]?)] = []
    /// Names beyond this many are copied each time (a producer with ever-new header names).
    private static let limit = 16

    mutating func header(name: UnsafePointer<CChar>?, value: UnsafeRawBufferPointer?) -> KafkaHeader {
        guard let name else { return KafkaHeader("", value.map { Array($0) }) }
        let nameBytes = UnsafeRawBufferPointer(start: name, count: strlen(name))
        guard let index = known.firstIndex(where: { Self.equal($0.name, nameBytes) }) else {
            let header = KafkaHeader(String(decoding: nameBytes, as: UTF8.self), value.map { Array($0) })
            if known.count < Self.limit { known.append((Array(nameBytes), header.name, header.value)) }
            return header
        }
        let text = known[index].text
        guard let value else { return KafkaHeader(text, nil) }
        if let last = known[index].value, Self.equal(last, value) { return KafkaHeader(text, last) }
        let bytes = Array(value)
        known[index].value = bytes
        return KafkaHeader(text, bytes)
    }

    private static func equal(_ bytes: [UInt8], _ raw: UnsafeRawBufferPointer) -> Bool {
        bytes.count == raw.count && (raw.isEmpty || bytes.withUnsafeBytes { memcmp($0.baseAddress!, raw.baseAddress!, raw.count) == 0 })
    }
}

/// A record to send to Kafka.
package struct OutgoingMessage: Sendable {
    package var topic: String
    /// A fixed partition, or nil to let the partitioner choose from the key.
    package var partition: Int32?
    package var key: [UInt8]?
    package var value: [UInt8]
    /// Milliseconds since the Unix epoch; nil lets librdkafka use the current time.
    package var timestamp: Int64?
    package var headers: [KafkaHeader]

    package init(topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8],
                timestamp: Int64? = nil, headers: [KafkaHeader] = []) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.headers = headers
    }
}

/// The outcome of one produced message, as librdkafka's delivery report gives it.
package struct DeliveryReport: Sendable {
    package var topic: String
    package var partition: Int32
    /// The offset the broker gave the message (-1 when it failed).
    package var offset: Int64
    package var timestamp: Int64?
    /// Set when the message was not delivered (after librdkafka's own retries).
    package var error: KafkaError?
}

/// Converts between Swift offsets and librdkafka's `rd_kafka_topic_partition_list_t`.
enum TopicPartitionList {
    static func make(_ entries: [(TopicPartition, Int64)]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        let list = rd_kafka_topic_partition_list_new(Int32(max(entries.count, 1)))!
        for (tp, offset) in entries {
            let element = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition)!
            element.pointee.offset = offset
        }
        return list
    }

    static func entries(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>) -> [(TopicPartition, Int64, rd_kafka_resp_err_t)] {
        var result: [(TopicPartition, Int64, rd_kafka_resp_err_t)] = []
        let count = Int(list.pointee.cnt)
        for i in 0..<count {
            let element = list.pointee.elems[i]
            result.append((TopicPartition(String(cString: element.topic), element.partition), element.offset, element.err))
        }
        return result
    }
}

/// librdkafka's logical offsets.
package enum KafkaOffset {
    /// No offset: resume from the committed one (or `auto.offset.reset`).
    package static let invalid = Int64(RD_KAFKA_OFFSET_INVALID)
    package static let beginning = Int64(RD_KAFKA_OFFSET_BEGINNING)
    package static let end = Int64(RD_KAFKA_OFFSET_END)
}
