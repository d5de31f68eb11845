import CRdkafka

/// A librdkafka error as a Swift error, carrying librdkafka's own message and code name,
/// plus what Genetika was doing (`context`).
package struct KafkaError: Error, Sendable, CustomStringConvertible, Equatable {
    /// librdkafka's `rd_kafka_resp_err_t` value (negative: client-side, positive: broker).
    package var code: Int32
    /// librdkafka's message for this occurrence.
    package var message: String
    /// What was being done: "produce to topic1", "subscribe to topic1, topic2".
    package var context: String
    var isFatal: Bool = false
    var isRetriable: Bool = false

    /// librdkafka's symbolic name of the code, e.g. `_TRANSPORT` or `UNKNOWN_TOPIC_OR_PART`.
    package var codeName: String { String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(code))) }

    package var description: String {
        let prefix = context.isEmpty ? "" : "\(context): "
        return "\(prefix)\(message) (\(codeName)\(isFatal ? ", fatal" : ""))"
    }

    package init(code: Int32, message: String, context: String, isFatal: Bool = false, isRetriable: Bool = false) {
        self.code = code
        self.message = message
        self.context = context
        self.isFatal = isFatal
        self.isRetriable = isRetriable
    }

    init(_ err: rd_kafka_resp_err_t, context: String, message: String? = nil) {
        self.init(code: err.rawValue, message: message ?? String(cString: rd_kafka_err2str(err)), context: context)
    }

    /// Takes ownership of an `rd_kafka_error_t` and destroys it.
    init(consuming error: OpaquePointer, context: String) {
        defer { rd_kafka_error_destroy(error) }
        self.init(
            code: rd_kafka_error_code(error).rawValue,
            message: String(cString: rd_kafka_error_string(error)),
            context: context,
            isFatal: rd_kafka_error_is_fatal(error) != 0,
            isRetriable: rd_kafka_error_is_retriable(error) != 0)
    }

    /// A configuration or setup error reported by librdkafka through an `errstr` buffer.
    static func configuration(_ message: String, context: String) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: message, context: context)
    }

    static let timedOut = RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue
    static let queueFull = RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue
    static let unknownTopic = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART.rawValue
}

/// librdkafka's version string as linked into this process (`rd_kafka_version_str()`).
package enum Librdkafka {
    package static var version: String { String(cString: rd_kafka_version_str()) }
}
