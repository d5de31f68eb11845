"""Baseline DB stage: one single-threaded consumer on the three topics; each event becomes an
SQLAlchemy ORM object merged (upsert by id) and committed on its own into SQLite."""
import argparse
import json

from confluent_kafka import Consumer
from sqlalchemy import Boolean, Column, Float, Integer, String, create_engine
from sqlalchemy.orm import Session, declarative_base

from common import TOPICS, consumer_config, log, now_ms, report

Base = declarative_base()


class Data1(Base):
    __tablename__ = "data1"
    id = Column(Integer, primary_key=True)
    age = Column(Integer)
    sex = Column(String)
    weight_kg = Column(Float)
    bmi = Column(Float)
    diagnosis = Column(String)
    phq9 = Column(Integer)
    enrolled_on = Column(String)


class Data2(Base):
    __tablename__ = "data2"
    id = Column(Integer, primary_key=True)
    cyp2d6 = Column(String)
    cyp2c19 = Column(String)
    comt = Column(String)
    slc6a4 = Column(String)
    call_rate = Column(Float)
    qc_pass = Column(Boolean)


class Data3(Base):
    __tablename__ = "data3"
    id = Column(Integer, primary_key=True)
    medication = Column(String)
    dose_mg = Column(Integer)
    response_score = Column(Float)
    adverse_events = Column(Integer)
    remission = Column(Boolean)
    notes = Column(String)


MODELS = dict(zip(TOPICS, [Data1, Data2, Data3]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--expect", type=int, required=True, help="events to write before exiting")
    args = parser.parse_args()
    engine = create_engine(f"sqlite:///{args.database}")
    Base.metadata.create_all(engine)
    consumer = Consumer(consumer_config(args.bootstrap, "baseline-db"))
    consumer.subscribe(TOPICS, on_assign=lambda c, p: log(f"db: assigned {len(p)} partitions"))
    written = 0
    first = None
    with Session(engine) as session:
        while written < args.expect:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                log(f"db: {msg.error()}")
                continue
            if first is None:
                first = now_ms()
            event = json.loads(msg.value())
            session.merge(MODELS[msg.topic()](**event))
            session.commit()
            written += 1
    consumer.close()
    report(stage="db", first_ms=first, done_ms=now_ms(), rows=written)


if __name__ == "__main__":
    main()
