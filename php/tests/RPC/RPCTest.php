<?php

declare(strict_types=1);

namespace Courser\Tests\RPC;

use Courser\Exception\RelayException;
use Courser\Frame;
use Courser\Relay\StreamRelay;
use Courser\RPC\RPC;
use Courser\RPC\RPCException;
use Courser\RPC\ServiceException;
use Courser\Tests\TestSupport;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/../TestSupport.php';

final class RPCTest extends TestCase
{
    /** @var list<resource> processes to close after the test */
    private array $processes = [];

    /** @var list<array<int, resource>> the pipes of those processes */
    private array $pipes = [];

    /** @var list<string> socket files to remove after the test */
    private array $socketFiles = [];

    protected function tearDown(): void
    {
        foreach ($this->pipes as $pipes) {
            foreach ($pipes as $pipe) {
                fclose($pipe);
            }
        }
        foreach ($this->processes as $process) {
            proc_terminate($process);
            proc_close($process);
        }
        foreach ($this->socketFiles as $path) {
            @unlink($path);
        }
        putenv('RR_RPC');
    }

    /**
     * The body of an RPC vector: the payload after the method name.
     */
    private static function body(string $vector): string
    {
        $frame = Frame::fromBytes(TestSupport::vector($vector));

        return (string) substr($frame->payload, $frame->options[1]);
    }

    /**
     * The nine calls of the vectors, in the order the official client made
     * them (seq 1..9): method, codec, argument, expected reply.
     *
     * @return list<array{0: string, 1: int, 2: string, 3: mixed}>
     */
    private static function vectorCalls(): array
    {
        $workers = ['workers' => [[
            'pid' => 4242,
            'status' => 1,
            'numExecs' => 7,
            'created' => 1700000000000000000,
            'memoryUsage' => 20971520,
            'CPUPercent' => 0.5,
            'command' => '',
            'statusStr' => 'ready',
        ]]];
        $calls = [
            ['informer_Workers', RPC::JSON, 'http', $workers],
            ['resetter_Reset', RPC::JSON, 'http', true],
        ];
        foreach (['kv_Set', 'kv_MGet', 'kv_Has', 'kv_Delete', 'jobs_Pause', 'jobs_Stat'] as $name) {
            $calls[] = [$name, RPC::PROTO, self::body('rpc_request_' . $name), self::body('rpc_response_' . $name)];
        }

        return $calls;
    }

    public function testRequestsMatchTheCapturedVectorsAndRepliesDecode(): void
    {
        [$client, $server] = TestSupport::socketPair();
        $rpc = new RPC(new StreamRelay($client, $client));

        // The replies are queued first, so each blocking call finds its answer waiting.
        foreach ([...self::vectorCalls(), ['informer_Nope']] as [$name]) {
            fwrite($server, TestSupport::vector('rpc_response_' . $name));
        }

        foreach (self::vectorCalls() as [$name, $codec, $argument, $expected]) {
            $method = str_replace('_', '.', $name);
            self::assertSame($expected, $rpc->call($method, $argument, $codec), $name);
            self::assertSame(
                bin2hex(TestSupport::vector('rpc_request_' . $name)),
                bin2hex(TestSupport::readRawFrame($server)),
                $name,
            );
        }

        try {
            $rpc->call('informer.Nope', 'x');
            self::fail('Expected a ServiceException.');
        } catch (ServiceException $e) {
            self::assertSame("rpc: can't find method informer.Nope", $e->getServerMessage());
            self::assertSame("Error 'rpc: can't find method informer.Nope' on Courser\\Relay\\StreamRelay", $e->getMessage());
            self::assertSame('informer.Nope', $e->getMethod());
        }
        self::assertSame(
            bin2hex(TestSupport::vector('rpc_request_informer_Nope')),
            bin2hex(TestSupport::readRawFrame($server)),
        );
    }

    public function testServicePrefixedClientsShareTheConnectionsSequence(): void
    {
        [$client, $server] = TestSupport::socketPair();
        $rpc = new RPC(new StreamRelay($client, $client));
        fwrite($server, TestSupport::vector('rpc_response_informer_Workers') . TestSupport::vector('rpc_response_resetter_Reset'));

        $rpc->withServicePrefix('informer')->call('workers', 'http');
        self::assertTrue($rpc->withServicePrefix('resetter')->call('reset', 'http'));

        self::assertSame(TestSupport::vector('rpc_request_informer_Workers'), TestSupport::readRawFrame($server));
        self::assertSame(TestSupport::vector('rpc_request_resetter_Reset'), TestSupport::readRawFrame($server));
    }

    /**
     * @return array<string, array{0: string, 1: string}>
     */
    public function badReplyProvider(): array
    {
        return [
            'wrong seq' => [Frame::encode(Frame::CODEC_JSON, [2, 6], 'x.Yyyytrue'), 'sequence mismatch (sent 1, got 2)'],
            'one option' => [Frame::encode(Frame::CODEC_JSON, [1], 'true'), 'expected 2 options'],
            'method too long' => [Frame::encode(Frame::CODEC_JSON, [1, 50], 'x.Y'), 'method length 50 exceeds'],
            'not JSON' => [Frame::encode(Frame::CODEC_JSON, [1, 3], 'x.Y{nope'), 'is not valid JSON'],
        ];
    }

    /**
     * @dataProvider badReplyProvider
     */
    public function testMalformedRepliesThrowRPCException(string $reply, string $message): void
    {
        [$client, $server] = TestSupport::socketPair();
        fwrite($server, $reply);

        $this->expectException(RPCException::class);
        $this->expectExceptionMessage($message);
        (new RPC(new StreamRelay($client, $client)))->call('x.Y', true);
    }

    public function testTheSequenceCountsFailedCallsToo(): void
    {
        [$client, $server] = TestSupport::socketPair();
        $rpc = new RPC(new StreamRelay($client, $client));
        fwrite($server, Frame::encode(Frame::CODEC_JSON | Frame::ERROR, [1, 3], 'x.Yboom'));
        fwrite($server, Frame::encode(Frame::CODEC_RAW, [2, 3], "x.Y\x00raw"));

        try {
            $rpc->call('x.Y', null);
            self::fail('Expected a ServiceException.');
        } catch (ServiceException $e) {
            self::assertSame('boom', $e->getServerMessage());
        }
        self::assertSame("\x00raw", $rpc->call('x.Y', "\x01\x02", RPC::RAW));

        self::assertSame(Frame::encode(Frame::CODEC_JSON, [1, 3], 'x.Ynull'), TestSupport::readRawFrame($server));
        self::assertSame(Frame::encode(Frame::CODEC_RAW, [2, 3], "x.Y\x01\x02"), TestSupport::readRawFrame($server));
    }

    public function testArgumentsThatDoNotFitTheCodecAreRefusedBeforeSending(): void
    {
        [$client, $server] = TestSupport::socketPair();
        $rpc = new RPC(new StreamRelay($client, $client));

        foreach ([[RPC::RAW, ['array']], [RPC::PROTO, 42], [RPC::JSON, NAN]] as [$codec, $argument]) {
            try {
                $rpc->call('x.Y', $argument, $codec);
                self::fail('Expected an RPCException.');
            } catch (RPCException $e) {
                self::assertStringContainsString('argument of x.Y', $e->getMessage());
            }
        }
        self::assertFalse(TestSupport::readable($server));

        $this->expectException(\InvalidArgumentException::class);
        $rpc->call('x.Y', 'a', Frame::CODEC_GOB);
    }

    public function testAProtobufMessageObjectIsSerialized(): void
    {
        [$client, $server] = TestSupport::socketPair();
        $message = new class () {
            public function serializeToString(): string
            {
                return "\x0a\x06emails";
            }
        };
        $rpc = new RPC(new StreamRelay($client, $client));
        // Six calls first, so that this one has seq 7 as in the vector.
        $this->advance($rpc, $server, 6);
        fwrite($server, TestSupport::vector('rpc_response_jobs_Pause'));

        self::assertSame('', $rpc->call('jobs.Pause', $message, RPC::PROTO));
        self::assertSame(TestSupport::vector('rpc_request_jobs_Pause'), TestSupport::readRawFrame($server));
    }

    /**
     * Makes $count calls that the fake answers, to move the sequence on.
     *
     * @param resource $server
     */
    private function advance(RPC $rpc, $server, int $count): void
    {
        $seq = 1;
        for ($i = 0; $i < $count; $i++, $seq++) {
            fwrite($server, Frame::encode(Frame::CODEC_JSON, [$seq, 3], 'a.Btrue'));
            self::assertTrue($rpc->call('a.B', 1));
            TestSupport::readRawFrame($server);
        }
    }

    public function testTheAddressComesFromTheArgumentOrRR_RPC(): void
    {
        putenv('RR_RPC');
        self::assertSame('tcp://127.0.0.1:6001', (new RPC())->address());
        self::assertSame('tcp://127.0.0.1:6001', RPC::fromEnvironment()->address());

        putenv('RR_RPC=unix:///run/rr.sock');
        self::assertSame('unix:///run/rr.sock', (new RPC())->address());
        self::assertSame('tcp://10.0.0.1:7000', (new RPC('tcp://10.0.0.1:7000'))->address());
    }

    /**
     * @return array<string, array{0: string}>
     */
    public function badAddressProvider(): array
    {
        return [
            'pipes' => ['pipes'],
            'no scheme' => ['127.0.0.1:6001'],
            'no port' => ['tcp://127.0.0.1'],
            'empty unix' => ['unix://'],
        ];
    }

    /**
     * @dataProvider badAddressProvider
     */
    public function testOtherAddressesAreRejected(string $address): void
    {
        $this->expectException(\InvalidArgumentException::class);
        new RPC($address);
    }

    public function testNoServerGivesARelayExceptionWithAHint(): void
    {
        $probe = stream_socket_server('tcp://127.0.0.1:0');
        self::assertIsResource($probe);
        $address = 'tcp://' . stream_socket_get_name($probe, false);
        fclose($probe); // nothing listens there now

        $rpc = new RPC($address, 0.2);
        $this->expectException(RelayException::class);
        $this->expectExceptionMessageMatches('/^RPC call informer\.List to tcp:\/\/127\.0\.0\.1:\d+ failed: Could not connect.*rpc" section/');
        $rpc->call('informer.List', true);
    }

    /**
     * @return array<string, array{0: string}>
     */
    public function listenProvider(): array
    {
        return [
            'tcp' => ['tcp://127.0.0.1:0'],
            'unix' => ['unix://' . sys_get_temp_dir() . '/courser-rpc-test-' . getmypid() . '.sock'],
        ];
    }

    /**
     * @dataProvider listenProvider
     */
    public function testRoundTripsWithAServerProcess(string $listen): void
    {
        if (str_starts_with($listen, 'unix://')) {
            $this->socketFiles[] = substr($listen, 7);
            @unlink(substr($listen, 7));
        }
        $rpc = new RPC($this->startFakeServer($listen));

        self::assertSame(['a' => 1, 'b' => [true, null]], $rpc->call('test.Echo', ['a' => 1, 'b' => [true, null]]));
        $bytes = random_bytes(300) . "\x00";
        self::assertSame($bytes, $rpc->call('test.Echo', $bytes, RPC::RAW));
        self::assertSame('', $rpc->call('test.Echo', '', RPC::PROTO));

        try {
            $rpc->call('test.Fail', 'x');
            self::fail('Expected a ServiceException.');
        } catch (ServiceException $e) {
            self::assertSame('it failed: "x"', $e->getServerMessage());
            self::assertStringEndsWith(' on ' . $rpc->address(), $e->getMessage());
        }

        $this->expectException(RPCException::class);
        $this->expectExceptionMessage('sequence mismatch (sent 5, got 105)');
        $rpc->call('test.BadSeq', 1);
    }

    /**
     * Starts fixtures/fake_rpc_server.php and returns the address it listens on.
     */
    private function startFakeServer(string $listen): string
    {
        $process = proc_open(
            [PHP_BINARY, __DIR__ . '/fixtures/fake_rpc_server.php', $listen],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
        );
        self::assertIsResource($process);
        $this->processes[] = $process;
        $this->pipes[] = $pipes;
        if (!TestSupport::readable($pipes[1], 10.0)) {
            self::fail('The fake server did not start: ' . stream_get_contents($pipes[2]));
        }

        return trim((string) fgets($pipes[1]));
    }
}
