<?php

declare(strict_types=1);

namespace Courser\Tests\Bridge\Slim;

use Courser\Bridge\Slim\SlimWorker;
use Courser\Frame;
use Courser\Http\HttpWorker;
use Courser\Http\Proto;
use Courser\Relay\StreamRelay;
use Courser\Tests\Http\Psr7Support;
use Courser\Tests\TestSupport;
use Courser\Worker;
use PHPUnit\Framework\TestCase;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;

require_once __DIR__ . '/../../Http/Psr7Support.php';

/**
 * Drives a SlimWorker on Debian's Slim 3 over a socket pair: the test plays
 * the server, writing request frames and reading the answers.
 */
final class SlimWorkerTest extends TestCase
{
    public const SLIM_AUTOLOAD = '/usr/share/php/Slim/autoload.php';

    /** @var resource */
    private $server;

    /** @var resource */
    private $client;

    /** @var array<array-key, mixed> */
    private array $savedServer;

    private \Slim\App $app;

    private SlimWorker $worker;

    private string|false $savedErrorLog = false;

    private string $log = '';

    protected function setUp(): void
    {
        if (!class_exists(\Slim\App::class) && is_file(self::SLIM_AUTOLOAD)) {
            require_once self::SLIM_AUTOLOAD;
        }
        if (!class_exists(\Slim\App::class)) {
            self::markTestSkipped('Slim 3 is not installed: apt-get install php-slim');
        }
        HttpWorker::resetCodec();
        $this->savedServer = $_SERVER;
        // Slim's error handlers and the bridge log with error_log(): keep it out of the test output.
        $this->log = (string) tempnam(sys_get_temp_dir(), 'courser-slim-log');
        $this->savedErrorLog = ini_set('error_log', $this->log);
        [$this->server, $this->client] = TestSupport::socketPair();
        $this->app = self::buildApp();
        $this->worker = $this->worker();
    }

    protected function tearDown(): void
    {
        ini_set('error_log', (string) $this->savedErrorLog);
        @unlink($this->log);
        $_SERVER = $this->savedServer;
        HttpWorker::resetCodec();
        fclose($this->server);
        fclose($this->client);
    }

    public function testTheRoutesAnswer(): void
    {
        self::assertSame([200, ['text/plain; charset=utf-8'], 'Hello from Slim'], $this->get('/'));

        [$status, $type, $body] = $this->get('/items');
        self::assertSame(200, $status);
        self::assertSame(['application/json'], $type);
        $items = json_decode($body, true, 512, JSON_THROW_ON_ERROR);
        self::assertCount(20, $items);
        self::assertSame(['id' => 20, 'name' => 'Item 20'], $items[19]);

        [$status, , $body] = $this->get('/nowhere');
        self::assertSame(404, $status);
        self::assertStringContainsString('Page Not Found', $body);

        [$status] = $this->send(['uri' => 'http://localhost/items', 'method' => 'DELETE']);
        self::assertSame(405, $status);
    }

    public function testTheRouteParameterReachesTheHandler(): void
    {
        self::assertSame('Hello, World', $this->get('/hello/World')[2]);
        self::assertSame('Hello, Ada', $this->get('/hello/Ada')[2]);
    }

    public function testTwoRequestsInARowDoNotShareRequestState(): void
    {
        $first = json_decode($this->get('/state/one?q=1', ['X-Trace' => ['a']])[2], true, 512, JSON_THROW_ON_ERROR);
        $second = json_decode($this->get('/state?r=2')[2], true, 512, JSON_THROW_ON_ERROR);

        self::assertSame(['opt' => 'one'], $first['args']);
        self::assertSame(['q' => '1'], $first['query']);
        self::assertSame('a', $first['trace']);
        self::assertSame('/state/one', $first['containerPath']);
        self::assertSame('/state/one', $first['environmentUri']);
        self::assertSame('/state/one?q=1', $first['server']);
        self::assertSame(1, $first['attribute']);

        self::assertSame([], $second['args'], 'the optional argument of the first request leaked');
        self::assertSame(['r' => '2'], $second['query']);
        self::assertSame('', $second['trace']);
        self::assertSame('/state', $second['containerPath']);
        self::assertSame('/state', $second['environmentUri']);
        self::assertSame('/state?r=2', $second['server']);
        self::assertSame(1, $second['attribute'], 'the response of the first request was reused');
    }

    public function testAnExceptionInARouteGivesA500AndTheNextRequestWorks(): void
    {
        [$status, , $body] = $this->get('/boom');
        self::assertSame(500, $status);
        self::assertStringContainsString('Slim Application Error', $body);

        [$status, , $body] = $this->get('/fatal');
        self::assertSame(500, $status, 'an Error (not an Exception) goes to the phpErrorHandler');

        self::assertSame([200, ['text/plain; charset=utf-8'], 'Hello from Slim'], $this->get('/'));
    }

    public function testAFailingErrorHandlerIsReportedAsAWorkerErrorAndTheWorkerGoesOn(): void
    {
        $container = $this->app->getContainer();
        $container['errorHandler'] = static fn () => static function (): never {
            throw new \LogicException('the error handler broke');
        };

        fwrite($this->server, Psr7Support::protoRequest(['uri' => 'http://localhost/boom']));
        self::assertTrue($this->worker->serveOne());
        $frame = Frame::fromBytes(TestSupport::readRawFrame($this->server));
        self::assertTrue($frame->hasFlag(Frame::ERROR));
        self::assertStringContainsString('the error handler broke', $frame->payload);
        self::assertStringContainsString('LogicException: the error handler broke', (string) file_get_contents($this->log));

        self::assertSame('Hello from Slim', $this->get('/')[2]);
    }

    public function testABigBodyIsStreamedInChunks(): void
    {
        $this->worker = $this->worker(1000, 1024);
        fwrite($this->server, Psr7Support::protoRequest(['uri' => 'http://localhost/big']));
        self::assertTrue($this->worker->serveOne());

        $frames = [];
        do {
            $frame = Frame::fromBytes(TestSupport::readRawFrame($this->server));
            $frames[] = $frame;
        } while ($frame->hasByte10(Frame::STREAM));

        self::assertCount(10, $frames, '10 KiB in 1 KiB chunks, the last one in the final frame');
        $body = '';
        foreach ($frames as $frame) {
            $body .= substr($frame->payload, $frame->options[0]);
        }
        self::assertSame(str_repeat('0123456789abcdef', 640), $body);
    }

    public function testHeadDropsTheBody(): void
    {
        [$status, , $body] = $this->send(['uri' => 'http://localhost/', 'method' => 'HEAD']);
        self::assertSame(200, $status);
        self::assertSame('', $body);
    }

    public function testAStopEndsServing(): void
    {
        fwrite($this->server, TestSupport::vector('stop'));
        self::assertFalse($this->worker->serveOne());
    }

    private static function buildApp(): \Slim\App
    {
        $app = new \Slim\App();
        $app->add(function (ServerRequestInterface $request, ResponseInterface $response, callable $next): ResponseInterface {
            // Counts in the shared response: 1 every time unless a response leaks.
            $count = (int) $response->getHeaderLine('X-Count');

            return $next($request->withAttribute('count', $count + 1), $response->withHeader('X-Count', (string) ($count + 1)));
        });
        $text = static fn (ResponseInterface $response, string $body): ResponseInterface => $response
            ->withHeader('Content-Type', 'text/plain; charset=utf-8')->write($body);
        $app->get('/', fn ($request, $response) => $text($response, 'Hello from Slim'));
        $app->get('/hello/{name}', fn ($request, $response, array $args) => $text($response, 'Hello, ' . $args['name']));
        $app->get('/items', fn ($request, $response) => $response->withJson(array_map(
            static fn (int $i): array => ['id' => $i, 'name' => "Item $i"],
            range(1, 20),
        )));
        $container = $app->getContainer();
        $app->get('/state[/{opt}]', fn (\Slim\Http\Request $request, $response, array $args) => $response->withJson([
            'args' => $args,
            'query' => $request->getQueryParams(),
            'trace' => $request->getHeaderLine('X-Trace'),
            'containerPath' => $container->get('request')->getUri()->getPath(),
            'environmentUri' => parse_url($container->get('environment')['REQUEST_URI'], PHP_URL_PATH),
            'server' => $_SERVER['REQUEST_URI'],
            'attribute' => $request->getAttribute('count'),
        ]));
        $app->get('/boom', function (): never {
            throw new \RuntimeException('boom');
        });
        $app->get('/fatal', fn () => intdiv(1, 0));
        $app->get('/big', fn ($request, $response) => $response->write(str_repeat('0123456789abcdef', 640)));

        return $app;
    }

    private function worker(int $limit = SlimWorker::DEFAULT_SINGLE_FRAME_LIMIT, int $chunk = SlimWorker::DEFAULT_CHUNK_SIZE): SlimWorker
    {
        return new SlimWorker($this->app, new HttpWorker(new Worker(new StreamRelay($this->client, $this->client))), $limit, $chunk);
    }

    /**
     * @param array<string, list<string>> $headers
     *
     * @return array{0: int, 1: list<string>, 2: string}
     */
    private function get(string $target, array $headers = []): array
    {
        $query = (string) parse_url($target, PHP_URL_QUERY);

        return $this->send(['uri' => 'http://localhost' . $target, 'rawQuery' => $query, 'headers' => $headers]);
    }

    /**
     * Sends one request, lets the worker answer it, and reads the one-frame answer.
     *
     * @param array<string, mixed> $fields
     *
     * @return array{0: int, 1: list<string>, 2: string}
     */
    private function send(array $fields): array
    {
        fwrite($this->server, Psr7Support::protoRequest($fields));
        self::assertTrue($this->worker->serveOne());

        $frame = Frame::fromBytes(TestSupport::readRawFrame($this->server));
        self::assertFalse($frame->hasFlag(Frame::ERROR), $frame->payload);
        self::assertSame(0, $frame->byte10, 'a single final frame');
        $context = substr($frame->payload, 0, $frame->options[0]);
        $response = Proto::decodeResponse($context);

        return [$response['status'], $response['headers']['Content-Type'] ?? [], substr($frame->payload, $frame->options[0])];
    }
}
