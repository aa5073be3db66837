<?php

declare(strict_types=1);

namespace Courser\RPC;

use Courser\Frame;

/**
 * Calls methods of the application server (Courser or RoadRunner) over
 * Goridge RPC.
 */
interface RPCInterface
{
    /** The argument is JSON-encoded and the reply JSON-decoded (to arrays). */
    public const JSON = Frame::CODEC_JSON;

    /** The argument is a byte string and the reply is returned as one. */
    public const RAW = Frame::CODEC_RAW;

    /**
     * The argument is an encoded protobuf message (a string, or an object
     * with serializeToString()), and the reply is the encoded reply message.
     */
    public const PROTO = Frame::CODEC_PROTO;

    /**
     * Returns a client on the same connection that calls "$service.Method"
     * for call('method', ...).
     */
    public function withServicePrefix(string $service): self;

    /**
     * Calls a method ("Service.Method") and returns the decoded reply.
     *
     * @param int $codec self::JSON, self::RAW or self::PROTO
     *
     * @throws ServiceException                  when the server answers with an error
     * @throws RPCException                      when the argument cannot be encoded or the reply does not fit the protocol
     * @throws \Courser\Exception\RelayException when the connection fails
     */
    public function call(string $method, mixed $payload, int $codec = self::JSON): mixed;
}
