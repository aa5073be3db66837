<?php

declare(strict_types=1);

namespace Courser\Tests;

use Courser\Exception\RelayException;
use Courser\Frame;
use Courser\Relay\Relay;
use Courser\Relay\SocketRelay;
use Courser\Relay\StreamRelay;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/TestSupport.php';

final class RelayTest extends TestCase
{
    /** @var list<string> socket files to remove after the test */
    private array $socketFiles = [];

    protected function tearDown(): void
    {
        foreach ($this->socketFiles as $path) {
            @unlink($path);
        }
    }

    public function testPipesAddressesGiveAStreamRelay(): void
    {
        self::assertInstanceOf(StreamRelay::class, Relay::create('pipes'));
        self::assertInstanceOf(StreamRelay::class, Relay::create('pipes://stdin:stdout'));
    }

    /**
     * @return array<string, array{0: string}>
     */
    public function socketAddressProvider(): array
    {
        return [
            'unix' => ['unix:///tmp/courser.sock'],
            'tcp' => ['tcp://127.0.0.1:6001'],
            'tcp name' => ['tcp://localhost:7000'],
            'tcp ipv6' => ['tcp://[::1]:6001'],
        ];
    }

    /**
     * @dataProvider socketAddressProvider
     */
    public function testSocketAddressesGiveASocketRelay(string $address): void
    {
        $relay = Relay::create($address);

        self::assertInstanceOf(SocketRelay::class, $relay);
        self::assertSame($address, $relay->address());
    }

    /**
     * @return array<string, array{0: string}>
     */
    public function badAddressProvider(): array
    {
        return [
            'empty' => [''],
            'unknown scheme' => ['udp://127.0.0.1:6001'],
            'other pipes' => ['pipes://stdin:stderr'],
            'tcp without port' => ['tcp://127.0.0.1'],
            'tcp port too big' => ['tcp://127.0.0.1:70000'],
            'unix without path' => ['unix://'],
        ];
    }

    /**
     * @dataProvider badAddressProvider
     */
    public function testOtherAddressesAreRejected(string $address): void
    {
        $this->expectException(\InvalidArgumentException::class);
        Relay::create($address);
    }

    public function testShortReadsAreJoinedIntoWholeFrames(): void
    {
        $bytes = TestSupport::vector('http_request_json_get') . TestSupport::vector('stop');
        $process = proc_open(
            [PHP_BINARY, __DIR__ . '/fixtures/slow_writer.php', bin2hex($bytes)],
            [1 => ['pipe', 'w']],
            $pipes,
        );
        self::assertIsResource($process);
        $relay = new StreamRelay($pipes[1], fopen('php://memory', 'wb'));

        self::assertSame(TestSupport::vector('http_request_json_get'), $relay->waitFrame()->toBytes());
        self::assertSame('{"stop":true}', $relay->waitFrame()->payload);
        fclose($pipes[1]);
        self::assertSame(0, proc_close($process));
    }

    public function testEofInsideAFrameIsAClearError(): void
    {
        [$server, $client] = TestSupport::socketPair();
        fwrite($server, substr(TestSupport::vector('stop'), 0, 15));
        fclose($server);

        $this->expectException(RelayException::class);
        $this->expectExceptionMessage('EOF after 3 of 13 bytes');
        (new StreamRelay($client, $client))->waitFrame();
    }

    public function testHasFrameReportsWaitingInputWithoutBlocking(): void
    {
        [$server, $client] = TestSupport::socketPair();
        $relay = new StreamRelay($client, $client);

        self::assertFalse($relay->hasFrame());
        fwrite($server, TestSupport::vector('pong') . TestSupport::vector('stream_stop'));
        self::assertTrue($relay->hasFrame());
        self::assertTrue($relay->waitFrame()->hasByte10(Frame::PONG));
        // The second frame may already sit in PHP's read buffer; it must still be reported.
        self::assertTrue($relay->hasFrame());
        self::assertTrue($relay->waitFrame()->hasByte10(Frame::STOP));
        self::assertFalse($relay->hasFrame());
    }

    public function testWritingToAClosedPeerFails(): void
    {
        [$server, $client] = TestSupport::socketPair();
        fclose($server);

        $this->expectException(RelayException::class);
        (new StreamRelay($client, $client))->send(new Frame(0, [0], str_repeat('x', 1 << 20)));
    }

    public function testAUnixSocketRelayConnectsEvenWhenTheServerListensLate(): void
    {
        $path = sys_get_temp_dir() . '/courser-test-' . getmypid() . '.sock';
        $this->socketFiles[] = $path;
        @unlink($path);

        self::assertSame('hello->world', $this->exchangeWithChild('unix://' . $path, 'unix://' . $path, 0.3));
    }

    public function testATcpSocketRelayExchangesFrames(): void
    {
        $server = stream_socket_server('tcp://127.0.0.1:0');
        self::assertIsResource($server);
        $address = 'tcp://' . stream_socket_get_name($server, false);
        fclose($server);

        self::assertSame('hello->world', $this->exchangeWithChild($address, $address, 0.0));
    }

    public function testConnectingGivesUpAfterTheTimeout(): void
    {
        $relay = new SocketRelay('unix://' . sys_get_temp_dir() . '/courser-nobody-listens.sock', 0.3);
        $start = microtime(true);

        try {
            $relay->waitFrame();
            self::fail('No exception.');
        } catch (RelayException $e) {
            self::assertStringContainsString('Could not connect to unix://', $e->getMessage());
        }
        self::assertGreaterThan(0.25, microtime(true) - $start);
        self::assertLessThan(2.0, microtime(true) - $start);
    }

    /**
     * Starts socket_client.php on $clientAddress, starts listening on
     * $listenAddress after $delay seconds, receives the child's frame and
     * answers "world".
     *
     * @return string what the child received, prefixed with what it sent
     */
    private function exchangeWithChild(string $clientAddress, string $listenAddress, float $delay): string
    {
        $process = proc_open(
            [PHP_BINARY, __DIR__ . '/fixtures/socket_client.php', $clientAddress],
            [1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
        );
        self::assertIsResource($process);
        usleep((int) ($delay * 1e6));

        $server = stream_socket_server($listenAddress);
        self::assertIsResource($server);
        $connection = stream_socket_accept($server, 5.0);
        self::assertIsResource($connection, 'the child did not connect');
        $relay = new StreamRelay($connection, $connection);

        $received = $relay->waitFrame();
        $relay->send(new Frame(Frame::CODEC_RAW, [0], 'world'));
        $output = stream_get_contents($pipes[1]);
        $errors = stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        self::assertSame(0, proc_close($process), $errors);
        fclose($connection);
        fclose($server);

        return $received->payload . '->' . $output;
    }
}
