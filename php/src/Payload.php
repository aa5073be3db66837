<?php

declare(strict_types=1);

namespace Courser;

/**
 * The content of one job or response: a context (RoadRunner's "header", for
 * HTTP the encoded request or status and headers) and a body.
 *
 * The constructor takes the body first, as RoadRunner's Payload does.
 */
final class Payload
{
    /**
     * @param string $body    the body bytes
     * @param string $context the context bytes
     * @param int    $flags   the flags byte of the frame this payload came in (its codec);
     *                        Worker::respond() ignores it and uses its $codec argument
     */
    public function __construct(
        public readonly string $body = '',
        public readonly string $context = '',
        public readonly int $flags = 0,
    ) {
    }
}
