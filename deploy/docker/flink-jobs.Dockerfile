# syntax=docker/dockerfile:1
# The analytics job image: the official Flink 2.2 (Java 17) image with chatify-flink-jobs.jar
# (com.chatify.flink.ChatEventProcessorJob, built from packages/analytics) in /opt/flink/usrlib.
# The job-submitter Job (deploy/k8s/flink/30-flink-job.yaml) runs `flink run` from it; the
# JobManager and TaskManagers run the same Flink image without the jar (session cluster).
#   docker build -f deploy/docker/flink-jobs.Dockerfile -t chatify/flink-jobs:1.0.0 .   (scripts/up.sh)

FROM maven:3.9.9-eclipse-temurin-17 AS build
WORKDIR /src
COPY packages/analytics/pom.xml ./
RUN --mount=type=cache,id=maven-repo,target=/root/.m2 mvn -B -q dependency:go-offline
COPY packages/analytics/src ./src
RUN --mount=type=cache,id=maven-repo,target=/root/.m2 mvn -B -q -DskipTests package

FROM flink:2.2.0-java17
COPY --from=build --chown=flink:flink /src/target/chatify-flink-jobs.jar /opt/flink/usrlib/chatify-flink-jobs.jar
USER flink
STOPSIGNAL SIGTERM
