<?php

declare(strict_types=1);

namespace Courser\Exception;

/**
 * Thrown into a response generator by Worker::respondStream() when the
 * server cancels the stream (a frame with the STOP bit, usually because the
 * HTTP client went away). The generator should catch it, release its
 * resources and return; nothing it yields afterwards is sent.
 */
class StreamStoppedException extends CourserException
{
}
